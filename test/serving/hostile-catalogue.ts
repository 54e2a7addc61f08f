/**
 * What a hostile or broken client can send a policy server, as cases over real sockets. Each case
 * returns what its client saw, as one line ("close 1011: <text>", "http 401: <body>", "reset", ...),
 * and the pattern that line must match. `test/serving/hostile.test.ts` runs them against a `vla serve`
 * process and checks after each that the process lives; `npm run bench -- hostile` runs them with a
 * steady robot connected throughout and reports its latency.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { NdArray, pack } from '@vla-orchestrator/client';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import { exampleObservation } from '../../src/client/examples.js';
import type { RobotSpec } from '../../src/config/robot.js';

export interface Target {
  port: number;
  /** The server's API key: cases send it unless they are about keys. */
  apiKey: string;
  robot: RobotSpec;
}

export interface HostileCase {
  name: string;
  expect: RegExp;
  run(t: Target): Promise<string>;
}

/** Packs Maps with Buffer keys as they are, so that an array's fields can be wrong. */
const rawPackr = new Packr({ useRecords: false, variableMapSize: true });

const url = (t: Target) => `ws://127.0.0.1:${t.port}`;
const auth = (t: Target) => ({ Authorization: `Api-Key ${t.apiKey}` });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Seeded uniform [0, 1): the random frames are the same on every run. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Connect, wait for the metadata frame, send `frames`, and report how the server ended it: the first
 * text frame and the close code, or "reply" lines for binary replies.
 */
export async function exchange(
  t: Target,
  frames: Array<Buffer | string>,
  opts: { headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<string> {
  const ws = new WebSocket(url(t), {
    headers: opts.headers ?? auth(t),
    perMessageDeflate: false,
    maxPayload: 0,
  });
  const seen: string[] = [];
  return new Promise<string>((resolve) => {
    const timer = setTimeout(() => {
      ws.terminate();
      resolve(`${seen.join('; ')}${seen.length ? '; ' : ''}timeout`);
    }, opts.timeoutMs ?? 10_000);
    let first = true;
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c;
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve(`http ${res.statusCode}: ${body.trim()}`);
      });
    });
    ws.on('error', () => {});
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (first) {
        first = false;
        for (const f of frames) ws.send(f);
        return;
      }
      seen.push(binary ? 'reply' : `text ${data.toString()}`);
    });
    ws.on('close', (code) => {
      clearTimeout(timer);
      const text = seen.find((s) => s.startsWith('text '));
      const replies = seen.filter((s) => s === 'reply').length;
      resolve(`${replies ? `${replies} replies; ` : ''}close ${code}${text ? `: ${text.slice(5)}` : ''}`);
    });
  });
}

/** A WebSocket upgrade request as bytes, with the API key unless told otherwise. */
function upgradeRequest(t: Target, authorization: string | null): string {
  const key = randomBytes(16).toString('base64');
  return [
    'GET / HTTP/1.1',
    `Host: 127.0.0.1:${t.port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
    ...(authorization === null ? [] : [`Authorization: ${authorization}`]),
    '',
    '',
  ].join('\r\n');
}

/** A client's binary frame header (masked, as RFC 6455 requires of clients) for `length` payload bytes. */
function frameHeader(length: number, opcode = 0x2, fin = true): Buffer {
  const b0 = (fin ? 0x80 : 0) | opcode;
  const mask = Buffer.from([1, 2, 3, 4]);
  if (length < 126) return Buffer.concat([Buffer.from([b0, 0x80 | length]), mask]);
  if (length < 65536) {
    const h = Buffer.from([b0, 0x80 | 126, 0, 0]);
    h.writeUInt16BE(length, 2);
    return Buffer.concat([h, mask]);
  }
  const h = Buffer.alloc(10);
  h[0] = b0;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  return Buffer.concat([h, mask]);
}

/** A whole client frame: the header and the payload masked with its key (1, 2, 3, 4). */
export function maskedFrame(body: Buffer, opcode = 0x2): Buffer {
  const masked = Buffer.from(body);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= (i & 3) + 1;
  return Buffer.concat([frameHeader(body.length, opcode), masked]);
}

/**
 * A raw TCP client: sends `steps` (bytes, or a pause in ms), then resets the connection (RST) or
 * closes it, without ever reading what the server said.
 */
async function rawTcp(
  t: Target,
  steps: Array<Buffer | string | number>,
  end: 'reset' | 'close',
): Promise<string> {
  const socket = net.connect(t.port, '127.0.0.1');
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  for (const step of steps) {
    if (typeof step === 'number') await sleep(step);
    else await new Promise<void>((r) => socket.write(step, () => r()));
  }
  if (end === 'reset') socket.resetAndDestroy();
  else socket.end();
  return end;
}

/** After a handshake the server's first frame is the metadata: read it, then go on raw. */
export async function upgraded(t: Target): Promise<net.Socket> {
  const socket = net.connect(t.port, '127.0.0.1');
  socket.on('error', () => {});
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.write(upgradeRequest(t, `Api-Key ${t.apiKey}`));
  let got = Buffer.alloc(0);
  await new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      const headEnd = got.indexOf('\r\n\r\n');
      if (headEnd >= 0 && got.length > headEnd + 4 + 2) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
  return socket;
}

function obs(t: Target, edit?: (o: Record<string, unknown>) => void): Record<string, unknown> {
  const o = exampleObservation(t.robot);
  edit?.(o);
  return o;
}

/** The least a robot may send (state and an 8×8 cam_high): many fit one TCP read. */
export function smallObservation(robot: RobotSpec): Record<string, unknown> {
  const o = exampleObservation(robot, { requiredCamerasOnly: true });
  o.images = { cam_high: new NdArray(new Uint8Array(8 * 8 * 3), [8, 8, 3]) };
  return o;
}

const f64 = (values: number[]) => new NdArray(new Float64Array(values), [values.length]);

/** A msgpack_numpy array map with its fields as given (so they can be wrong). */
function ndarrayMap(fields: {
  data?: unknown;
  dtype?: unknown;
  shape?: unknown;
  flag?: unknown;
}): Map<unknown, unknown> {
  const m = new Map<unknown, unknown>([[Buffer.from('__ndarray__'), fields.flag ?? true]]);
  if ('data' in fields) m.set(Buffer.from('data'), fields.data);
  if ('dtype' in fields) m.set(Buffer.from('dtype'), fields.dtype);
  if ('shape' in fields) m.set(Buffer.from('shape'), fields.shape);
  return m;
}

/** An observation whose state is replaced by raw msgpack bytes (spliced into a valid message). */
function withRawState(t: Target, stateBytes: Buffer): Buffer {
  const o = obs(t);
  delete o.state;
  const rest = pack(o);
  // A fixmap's count is its low nibble: one more entry, "state" first.
  const count = rest[0]! & 0x0f;
  return Buffer.concat([
    Buffer.from([0x80 | (count + 1), 0xa5]),
    Buffer.from('state'),
    stateBytes,
    rest.subarray(1),
  ]);
}

/** An ndarray map holding a state of 14 float64 (the fields' encodings as given). */
function rawNdarray(dtype: string, data: Buffer, shape: number[]): Buffer {
  const bin = (s: string) => Buffer.concat([Buffer.from([0xc4, s.length]), Buffer.from(s)]);
  const str = (s: string) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
  const dataHeader =
    data.length < 256
      ? Buffer.from([0xc4, data.length])
      : Buffer.from([0xc5, data.length >> 8, data.length & 0xff]);
  return Buffer.concat([
    Buffer.from([0x84]),
    bin('__ndarray__'),
    Buffer.from([0xc3]),
    bin('data'),
    dataHeader,
    data,
    bin('dtype'),
    str(dtype),
    bin('shape'),
    Buffer.from([0x90 | shape.length, ...shape]),
  ]);
}

const CLOSE_1011 = (text: string | RegExp) =>
  new RegExp(
    `^close 1011: ${typeof text === 'string' ? text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : text.source}`,
  );

/** Texts a refusal may start with: a field the robot sent, or the part of the message at fault. */
const OUR_WORDS = /^close 1011: (message|observation|request|state|images|prompt|array|numpy)[\w/[\]]*[: ]/;

export function catalogue(): HostileCase[] {
  const cases: HostileCase[] = [];
  const add = (name: string, expect: RegExp, run: (t: Target) => Promise<string>) =>
    cases.push({ name, expect, run });

  // Keys and the upgrade.
  add('no API key', /^http 401: missing API key/, (t) => exchange(t, [], { headers: {} }));
  add('wrong API key', /^http 401: wrong API key/, (t) =>
    exchange(t, [], { headers: { Authorization: 'Api-Key nope' } }),
  );
  add('the key with a character more', /^http 401: wrong API key/, (t) =>
    exchange(t, [], { headers: { Authorization: `Api-Key ${t.apiKey}x` } }),
  );
  add('the key but its last character', /^http 401: wrong API key/, (t) =>
    exchange(t, [], { headers: { Authorization: `Api-Key ${t.apiKey.slice(0, -1)}` } }),
  );
  add('reset after a wrong key, before reading the 401', /^reset$/, (t) =>
    rawTcp(t, [upgradeRequest(t, 'Api-Key wrong'), 0], 'reset'),
  );
  add('reset right after connecting', /^reset$/, (t) => rawTcp(t, [], 'reset'));
  add('reset half-way through the upgrade request', /^reset$/, (t) =>
    rawTcp(t, [upgradeRequest(t, `Api-Key ${t.apiKey}`).slice(0, 40)], 'reset'),
  );
  add('reset right after a good upgrade request', /^reset$/, (t) =>
    rawTcp(t, [upgradeRequest(t, `Api-Key ${t.apiKey}`)], 'reset'),
  );
  add('garbage instead of HTTP, then close', /^close$/, (t) =>
    rawTcp(t, ['\x00\x01garbage\r\n\r\n'], 'close'),
  );
  add(
    'plain HTTP to the WebSocket path',
    /^http 426: this is a WebSocket policy server/,
    (t) =>
      new Promise((resolve, reject) => {
        http
          .get(`http://127.0.0.1:${t.port}/`, (res) => {
            let body = '';
            res.on('data', (c: Buffer) => {
              body += c;
            });
            res.on('end', () => resolve(`http ${res.statusCode}: ${body.trim()}`));
          })
          .on('error', reject);
      }),
  );

  // Resets after the upgrade, at each stage of a request.
  add('reset before reading the metadata', /^reset$/, async (t) => {
    (await upgraded(t)).resetAndDestroy();
    return 'reset';
  });
  add('reset half-way through a frame', /^reset$/, async (t) => {
    const s = await upgraded(t);
    const body = pack(obs(t));
    s.write(Buffer.concat([frameHeader(body.length), body.subarray(0, body.length >> 1)]));
    await sleep(20);
    s.resetAndDestroy();
    return 'reset';
  });
  add('reset after a whole request, before the reply', /^reset$/, async (t) => {
    const s = await upgraded(t);
    s.write(maskedFrame(pack(obs(t))));
    s.resetAndDestroy();
    return 'reset';
  });
  add('a 63 MB frame announced, a little sent, then reset', /^reset$/, async (t) => {
    const s = await upgraded(t);
    s.write(Buffer.concat([frameHeader(63 << 20), Buffer.alloc(4096)]));
    await sleep(20);
    s.resetAndDestroy();
    return 'reset';
  });

  // Frames that break the WebSocket protocol itself: ws closes with the RFC's code.
  add('an unmasked client frame', /^close$/, async (t) => {
    const s = await upgraded(t);
    s.write(Buffer.from([0x82, 0x01, 0x00]));
    await sleep(50);
    s.end();
    return 'close';
  });
  add('a reserved opcode', /^close$/, async (t) => {
    const s = await upgraded(t);
    s.write(Buffer.concat([frameHeader(1, 0x3), Buffer.from([0])]));
    await sleep(50);
    s.end();
    return 'close';
  });
  add('a text frame', CLOSE_1011('request: expected a binary msgpack frame, got a text frame'), (t) =>
    exchange(t, ['{"state": [1, 2, 3]}']),
  );
  add('a text frame of invalid UTF-8', /^close 1007$/, async (t) => {
    const s = await upgraded(t);
    s.write(maskedFrame(Buffer.from([0xff, 0xfe]), 0x1));
    const code = await new Promise<string>((resolve) => {
      s.on('data', (d: Buffer) => {
        // A server close frame: 0x88, length, then the code.
        const i = d.indexOf(0x88);
        if (i >= 0 && d.length >= i + 4) resolve(`close ${d.readUInt16BE(i + 2)}`);
      });
      setTimeout(() => resolve('timeout'), 5000);
    });
    s.destroy();
    return code;
  });

  // Sizes.
  add(
    'a 17 MB message (over the 16 MB limit)',
    /^close 1009: request: expected at most 16777216 bytes \(serve.max_message_mb\), got a larger message$/,
    (t) => exchange(t, [Buffer.alloc(17 << 20, 0x90)]),
  );
  add(
    'a prompt of 10 MB',
    CLOSE_1011('message: expected strings of at most 65536 bytes, got one of 10485760'),
    (t) =>
      exchange(t, [
        pack(
          obs(t, (o) => {
            o.prompt = 'x'.repeat(10 << 20);
          }),
        ),
      ]),
  );
  add(
    'a map of a million keys',
    CLOSE_1011('message: expected at most 10000 values in all, got a map of 1000000'),
    (t) => {
      const n = 1_000_000;
      const m = Buffer.alloc(5 + n * 6);
      m[0] = 0xdf;
      m.writeUInt32BE(n, 1);
      for (let i = 0; i < n; i++) {
        m[5 + i * 6] = 0xce;
        m.writeUInt32BE(i, 6 + i * 6);
        m[10 + i * 6] = 0xc0;
      }
      return exchange(t, [m]);
    },
  );
  add(
    'a list nested 100,000 deep',
    CLOSE_1011('message: expected maps and arrays nested at most 16 deep'),
    (t) => exchange(t, [Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0xc0])])]),
  );
  add('a state list of 1,000,000 numbers', CLOSE_1011('message: expected at most 10000 values'), (t) => {
    const n = 1_000_000;
    return exchange(t, [
      withRawState(t, Buffer.concat([Buffer.from([0xdd, 0, 0x0f, 0x42, 0x40]), Buffer.alloc(n, 0x01)])),
    ]);
  });

  // Not an observation.
  for (const [label, bytes] of [
    ['a list', Buffer.from([0x92, 0x01, 0x02])],
    ['an integer', Buffer.from([0x2a])],
    ['a string', Buffer.from([0xa3, 0x61, 0x62, 0x63])],
    ['nil', Buffer.from([0xc0])],
    ['an empty frame', Buffer.alloc(0)],
  ] as const) {
    add(`a message that is ${label}`, /^close 1011: (observation: expected a map|message: truncated)/, (t) =>
      exchange(t, [bytes]),
    );
  }
  add(
    'msgpack extension types (msgpackr would build a Set, an Error)',
    CLOSE_1011('message: expected maps, lists'),
    (t) => exchange(t, [Buffer.from([0xd4, 0x73, 0x00])]),
  );
  add('a Date extension inside the observation', CLOSE_1011('message: expected maps, lists'), (t) =>
    exchange(t, [withRawState(t, Buffer.from([0xd6, 0xff, 0, 0, 0, 0]))]),
  );
  add('0xc1, the byte msgpack never uses', CLOSE_1011('message: byte 0 is 0xc1'), (t) =>
    exchange(t, [Buffer.from([0xc1])]),
  );
  add(
    'trailing bytes after the observation',
    CLOSE_1011('message: expected one msgpack value, got 3 bytes after it'),
    (t) => exchange(t, [Buffer.concat([pack(obs(t)), Buffer.from([1, 2, 3])])]),
  );
  add(
    'a "__proto__" key holding the state',
    CLOSE_1011('state: expected a float array of shape [14], got nothing (missing)'),
    (t) => {
      const o = obs(t);
      const state = o.state;
      delete o.state;
      return exchange(t, [pack({ ...o, ['__proto__']: { state } })]);
    },
  );

  // Wrong or missing fields.
  add('no state', CLOSE_1011('state: expected a float array of shape [14], got nothing (missing)'), (t) =>
    exchange(t, [
      pack(
        obs(t, (o) => {
          delete o.state;
        }),
      ),
    ]),
  );
  add('the state as a string', CLOSE_1011('state: expected a float array of shape [14], got string'), (t) =>
    exchange(t, [
      pack(
        obs(t, (o) => {
          o.state = 'zeros';
        }),
      ),
    ]),
  );
  add(
    'the state of the wrong length',
    CLOSE_1011('state: expected a float array of shape [14], got <f8[13]'),
    (t) =>
      exchange(t, [
        pack(
          obs(t, (o) => {
            o.state = f64(new Array(13).fill(0));
          }),
        ),
      ]),
  );
  add('a NaN in the state', CLOSE_1011('state[3]: expected a finite number'), (t) =>
    exchange(t, [
      pack(
        obs(t, (o) => {
          o.state = f64([0, 0, 0, Number.NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        }),
      ),
    ]),
  );
  add('an infinity in the state', CLOSE_1011('state[0]: expected a finite number'), (t) =>
    exchange(t, [
      pack(
        obs(t, (o) => {
          o.state = f64([Number.POSITIVE_INFINITY, ...new Array(13).fill(0)]);
        }),
      ),
    ]),
  );
  add(
    'a float64 past float32 (3.5e38)',
    CLOSE_1011("state[13]: expected a finite number within float32's range (±3.4e38), got 3.5e+38"),
    (t) =>
      exchange(t, [
        pack(
          obs(t, (o) => {
            o.state = f64([...new Array(13).fill(0), 3.5e38]);
          }),
        ),
      ]),
  );
  add('no cam_high', CLOSE_1011('images/cam_high: expected a uint8 image'), (t) =>
    exchange(t, [
      pack(
        obs(t, (o) => {
          delete (o.images as Record<string, unknown>).cam_high;
        }),
      ),
    ]),
  );
  add(
    'a float image',
    CLOSE_1011('images/cam_high: expected a uint8 image [H, W, 3] or [3, H, W], got <f4[3, 4, 4]'),
    (t) =>
      exchange(t, [
        pack(
          obs(t, (o) => {
            (o.images as Record<string, unknown>).cam_high = new NdArray(new Float32Array(48), [3, 4, 4]);
          }),
        ),
      ]),
  );
  add('an image of 2 channels', CLOSE_1011('images/cam_high: expected a uint8 image'), (t) =>
    exchange(t, [
      pack(
        obs(t, (o) => {
          (o.images as Record<string, unknown>).cam_high = new NdArray(new Uint8Array(32), [4, 4, 2]);
        }),
      ),
    ]),
  );
  add('images as a list', CLOSE_1011('images/cam_high: expected a uint8 image'), (t) =>
    exchange(t, [
      pack(
        obs(t, (o) => {
          o.images = [1, 2, 3];
        }),
      ),
    ]),
  );
  add('the prompt as a number', CLOSE_1011('prompt: expected a string, got number 42'), (t) =>
    exchange(t, [
      pack(
        obs(t, (o) => {
          o.prompt = 42;
        }),
      ),
    ]),
  );

  // Bad ndarray headers.
  const bad = (name: string, text: string, fields: Parameters<typeof ndarrayMap>[0]) =>
    add(`ndarray: ${name}`, CLOSE_1011(text), (t) =>
      exchange(t, [withRawState(t, rawPackr.pack(ndarrayMap(fields)))]),
    );
  bad('data missing', 'array data: expected bytes', { dtype: '<f8', shape: [14] });
  bad('data as a string', 'array data: expected bytes', { data: 'abc', dtype: '<f8', shape: [14] });
  bad('dtype missing', 'array dtype: expected a numpy dtype string, got undefined', {
    data: Buffer.alloc(112),
    shape: [14],
  });
  bad('a complex dtype', 'array dtype: expected one of float32/float64', {
    data: Buffer.alloc(224),
    dtype: '<c16',
    shape: [14],
  });
  bad('an object dtype', 'array dtype: expected one of float32/float64', {
    data: Buffer.alloc(112),
    dtype: '|O',
    shape: [14],
  });
  bad('big-endian', 'array dtype: expected little-endian data, got big-endian ">f8"', {
    data: Buffer.alloc(112),
    dtype: '>f8',
    shape: [14],
  });
  bad('a negative shape', 'array shape: expected a list of non-negative integers, got [-14]', {
    data: Buffer.alloc(112),
    dtype: '<f8',
    shape: [-14],
  });
  bad('a shape that is not a list', 'array shape: expected a list of non-negative integers, got 14', {
    data: Buffer.alloc(112),
    dtype: '<f8',
    shape: 14,
  });
  bad('a fractional shape', 'array shape: expected a list of non-negative integers, got [14.5]', {
    data: Buffer.alloc(112),
    dtype: '<f8',
    shape: [14.5],
  });
  bad(
    'bytes that disagree with the shape',
    'array data: expected 112 bytes for 14 elements of <f8, got 111',
    { data: Buffer.alloc(111), dtype: '<f8', shape: [14] },
  );
  bad('a shape of 10^18 elements', 'array data: expected', {
    data: Buffer.alloc(112),
    dtype: '<f8',
    shape: [1e9, 1e9],
  });
  add('ndarray: odd-aligned float64 bytes (copied, accepted)', /^1 replies; close 1000$/, async (t) => {
    const ws = new WebSocket(url(t), { headers: auth(t) });
    ws.on('error', () => {});
    let replies = 0;
    return new Promise<string>((resolve) => {
      ws.on('message', (_d, binary) => {
        if (!binary) return;
        if (replies++ === 0) ws.send(withRawState(t, rawNdarray('<f8', Buffer.alloc(112), [14])));
        else ws.close(1000);
      });
      ws.on('close', (code) => resolve(`${replies - 1} replies; close ${code}`));
    });
  });
  const scalar = (value: Buffer, dtype: string) =>
    Buffer.concat([
      Buffer.from([0x83, 0xc4, 13]),
      Buffer.from('__npgeneric__'),
      Buffer.from([0xc3, 0xc4, 4]),
      Buffer.from('data'),
      value,
      Buffer.from([0xc4, 5]),
      Buffer.from('dtype'),
      Buffer.from([0xa0 | dtype.length]),
      Buffer.from(dtype),
    ]);
  add(
    'numpy scalar <i8 holding 1.5',
    CLOSE_1011('numpy scalar data: expected an integer for dtype <i8, got 1.5'),
    (t) => {
      const f = Buffer.alloc(9);
      f[0] = 0xcb;
      f.writeDoubleBE(1.5, 1);
      return exchange(t, [withRawState(t, scalar(f, '<i8'))]);
    },
  );
  add(
    'numpy scalar |u1 holding 300',
    CLOSE_1011('numpy scalar data: expected a value that fits dtype |u1, got 300'),
    (t) => exchange(t, [withRawState(t, scalar(Buffer.from([0xcd, 0x01, 0x2c]), '|u1'))]),
  );
  add('numpy scalar holding a string', CLOSE_1011('numpy scalar data: expected a number, got string'), (t) =>
    exchange(t, [withRawState(t, scalar(Buffer.from([0xa1, 0x61]), '<f8'))]),
  );

  // Truncated and random frames.
  add('a valid observation cut at 200 points', /^200 refused in our words$/, async (t) => {
    const whole = pack(obs(t));
    const rand = mulberry32(7);
    const outcomes = await pool(200, 8, () => {
      const cut = Math.floor(rand() * whole.length);
      return exchange(t, [whole.subarray(0, cut)]);
    });
    const ours = outcomes.filter((o) => OUR_WORDS.test(o)).length;
    return ours === outcomes.length
      ? `${ours} refused in our words`
      : `not in our words: ${outcomes.find((o) => !OUR_WORDS.test(o))}`;
  });
  add('1,000 seeded random frames', /^1000 refused in our words$/, async (t) => {
    const rand = mulberry32(28);
    const frames = Array.from({ length: 1000 }, (_, i) => {
      const n = 1 + Math.floor(rand() * 300);
      const b = Buffer.alloc(n);
      for (let j = 0; j < n; j++) b[j] = Math.floor(rand() * 256);
      // Half start as a map, so that decoding goes further than the first byte.
      if (i % 2 === 0) b[0] = 0x80 | Math.floor(rand() * 16);
      return b;
    });
    let next = 0;
    const outcomes = await pool(frames.length, 8, () => exchange(t, [frames[next++]!]));
    const ours = outcomes.filter((o) => OUR_WORDS.test(o)).length;
    return ours === outcomes.length
      ? `${ours} refused in our words`
      : `not in our words: ${outcomes.find((o) => !OUR_WORDS.test(o))}`;
  });

  // Clients that break the rhythm.
  add(
    '100 requests without waiting for replies',
    // Replies to the first requests may go out before the rest arrive: how many depends on timing.
    /^(\d+ replies; )?close 1011: request: expected one request at a time \(wait for the reply\), got a second$/,
    (t) => {
      const m = pack(smallObservation(t.robot));
      return exchange(t, new Array(100).fill(m));
    },
  );
  add('requests sent while never reading the replies', /^cut off after \d+ requests$/, async (t) => {
    const s = await upgraded(t);
    s.pause();
    let cut = false;
    s.on('close', () => {
      cut = true;
    });
    const frame = maskedFrame(pack(smallObservation(t.robot)));
    let sent = 0;
    const deadline = Date.now() + 60_000;
    // One at a time, a millisecond apart: each reply is out before the next request, none a second request.
    while (!cut && Date.now() < deadline) {
      s.write(frame);
      sent++;
      await sleep(1);
    }
    s.destroy();
    return cut ? `cut off after ${sent} requests` : `still connected after ${sent} requests`;
  });

  return cases;
}

/** Runs `n` tasks, `width` at a time, and returns their results in order of completion. */
async function pool<T>(n: number, width: number, task: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  let started = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (started < n) {
        started++;
        out.push(await task());
      }
    }),
  );
  return out;
}
