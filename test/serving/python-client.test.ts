/**
 * openpi's Python client speaks to our server: a Python robot written as openpi-client talks (numpy
 * arrays as msgpack maps with bytes keys, the metadata frame first, text frames for errors) against a
 * real `vla serve` process. Needs python3 with numpy, msgpack and websockets (Debian's python3-numpy,
 * python3-msgpack, python3-websockets, which .ci/run installs); skips with a message without them.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startServe, stopServe } from './serve-process.js';

const PY = '/usr/bin/python3';
const SCRIPT = path.join(import.meta.dirname, 'python', 'openpi_style_client.py');

function pythonMissing(): string | null {
  try {
    execFileSync(PY, ['-c', 'import numpy, msgpack, websockets'], { stdio: 'ignore' });
    return null;
  } catch {
    return `${PY} with numpy, msgpack and websockets (apt-get install python3-numpy python3-msgpack python3-websockets)`;
  }
}

const missing = pythonMissing();
if (missing) console.log(`skipping the Python client test: it needs ${missing}`);

describe.skipIf(missing !== null)("openpi's Python client against vla serve", () => {
  it.each([
    ['aloha', [50, 14]],
    ['droid', [50, 8]],
  ] as const)('%s: metadata, three chunks, then a text error naming the field', async (robot, shape) => {
    const server = await startServe(['--robot', robot, '--policy', 'zeros']);
    try {
      const out = execFileSync(PY, [SCRIPT, server.url, robot], { encoding: 'utf8', timeout: 30_000 });
      const seen = JSON.parse(out.trim().split('\n').at(-1)!);
      expect(seen.actions_shape).toEqual(shape);
      expect(seen.actions_dtype).toMatch(/^<f[48]$/);
      expect(seen.finite).toBe(true);
      expect(seen.reply_keys).toEqual(expect.arrayContaining(['actions', 'policy_timing', 'server_timing']));
      expect(seen.error_is_text).toBe(true);
      expect(seen.error).toMatch(/state|joint_position/);
    } finally {
      await stopServe(server);
    }
  });
});
