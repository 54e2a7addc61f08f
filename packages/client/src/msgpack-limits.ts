/**
 * A walk over a msgpack message's structure before anything is decoded: it reads only the type bytes
 * and lengths (bin and str payloads are skipped, not read), so its cost is the number of values, and
 * it refuses what decoding would choke on or spend too long on: truncated data, nesting deeper than
 * the limit, more values than the limit, strings longer than the limit, extension types (openpi's
 * msgpack_numpy never sends them, and msgpackr gives them meanings of its own), trailing bytes.
 * Errors name the byte offset and the limit, in our words, never the decoder's.
 */
/** A message the codec refuses: the text names what was expected and what arrived. */
export class CodecError extends Error {
  override name = 'CodecError';
}

export interface DecodeLimits {
  /** Deepest nesting of maps and arrays (an observation nests 4: message, images, array, shape). */
  maxDepth: number;
  /** Most values in one message, counting each map entry and array element: bounds decoding time. */
  maxValues: number;
  /** Longest string, in bytes (a prompt is a sentence). */
  maxStringBytes: number;
}

/**
 * An observation holds a few dozen values; 10,000 decode in about a millisecond, where the million
 * keys of a hostile 7 MB map stalled the server for a second.
 */
export const DEFAULT_LIMITS: DecodeLimits = { maxDepth: 16, maxValues: 10_000, maxStringBytes: 64 * 1024 };

/** Throws a CodecError when the message is not one well-formed msgpack value within the limits. */
export function checkMessage(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  let pos = 0;
  let values = 0;
  /** Values still to read in each open map or array, innermost last; the root is one value. */
  const open: number[] = [1];

  const need = (n: number, what: string) => {
    if (pos + n > end) {
      throw new CodecError(
        `message: truncated at byte ${pos}: expected ${n} more bytes for ${what}, got ${end - pos}`,
      );
    }
  };
  const length = (size: 1 | 2 | 4, what: string): number => {
    need(size, `the length of ${what}`);
    const n = size === 1 ? view.getUint8(pos) : size === 2 ? view.getUint16(pos) : view.getUint32(pos);
    pos += size;
    return n;
  };
  const skip = (n: number, what: string) => {
    need(n, what);
    pos += n;
  };
  const string = (n: number) => {
    if (n > limits.maxStringBytes) {
      throw new CodecError(
        `message: expected strings of at most ${limits.maxStringBytes} bytes, got one of ${n} at byte ${pos}`,
      );
    }
    skip(n, 'a string');
  };
  const container = (n: number, perEntry: 1 | 2, what: string) => {
    values += n;
    if (values > limits.maxValues) {
      throw new CodecError(
        `message: expected at most ${limits.maxValues} values in all, got a ${what} of ${n} entries at byte ${pos} (${values} so far)`,
      );
    }
    if (n === 0) return;
    if (open.length > limits.maxDepth) {
      throw new CodecError(
        `message: expected maps and arrays nested at most ${limits.maxDepth} deep, got deeper at byte ${pos}`,
      );
    }
    open.push(n * perEntry);
  };

  while (open.length > 0) {
    if (open[open.length - 1] === 0) {
      open.pop();
      continue;
    }
    open[open.length - 1]!--;
    need(1, 'a value');
    const type = bytes[pos++]!;
    if (type <= 0x7f || type >= 0xe0 || type === 0xc0 || type === 0xc2 || type === 0xc3) continue;
    if (type <= 0x8f) container(type & 0x0f, 2, 'map');
    else if (type <= 0x9f) container(type & 0x0f, 1, 'list');
    else if (type <= 0xbf) string(type & 0x1f);
    else if (type === 0xc4) skip(length(1, 'bytes'), 'bytes');
    else if (type === 0xc5) skip(length(2, 'bytes'), 'bytes');
    else if (type === 0xc6) skip(length(4, 'bytes'), 'bytes');
    else if (type === 0xca) skip(4, 'a float32');
    else if (type === 0xcb) skip(8, 'a float64');
    else if (type === 0xcc || type === 0xd0) skip(1, 'an integer');
    else if (type === 0xcd || type === 0xd1) skip(2, 'an integer');
    else if (type === 0xce || type === 0xd2) skip(4, 'an integer');
    else if (type === 0xcf || type === 0xd3) skip(8, 'an integer');
    else if (type === 0xd9) string(length(1, 'a string'));
    else if (type === 0xda) string(length(2, 'a string'));
    else if (type === 0xdb) string(length(4, 'a string'));
    else if (type === 0xdc) container(length(2, 'a list'), 1, 'list');
    else if (type === 0xdd) container(length(4, 'a list'), 1, 'list');
    else if (type === 0xde) container(length(2, 'a map'), 2, 'map');
    else if (type === 0xdf) container(length(4, 'a map'), 2, 'map');
    else if (type === 0xc1)
      throw new CodecError(`message: byte ${pos - 1} is 0xc1, which msgpack never uses`);
    else {
      throw new CodecError(
        `message: expected maps, lists, strings, bytes, numbers, booleans or nil, got a msgpack extension type (0x${type.toString(16)}) at byte ${pos - 1}`,
      );
    }
  }
  if (pos !== end) {
    throw new CodecError(
      `message: expected one msgpack value, got ${end - pos} bytes after it (from byte ${pos})`,
    );
  }
}
