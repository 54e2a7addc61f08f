/** An error caused by what the user gave us (a file, a flag, a message): printed as one line, no stack. */
export class UserError extends Error {
  override name = 'UserError';
}

/** `"sixteen" (string)`, `[1, 2] (array of 2)`, `nothing (missing)`: the actual value, for error messages. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing (missing)';
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    const shown = JSON.stringify(value);
    return `${shown.length > 60 ? `${shown.slice(0, 57)}...` : shown} (array of ${value.length})`;
  }
  if (typeof value === 'object') {
    const keys = Object.keys(value as object);
    return `a map with keys ${keys.slice(0, 8).join(', ')}${keys.length > 8 ? ', ...' : ''}`;
  }
  const shown = JSON.stringify(value) ?? String(value);
  return `${shown.length > 60 ? `${shown.slice(0, 57)}...` : shown} (${typeof value})`;
}
