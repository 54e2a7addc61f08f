import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { describeBackend, setupBackend } from '../../src/backend/index.js';
import { packStats } from '../../src/backend/native/pack.js';
import { PACKAGE_ROOT } from '../../src/config/load.js';

// Vitest runs each test file in its own process (pool: forks): this one starts WASM threaded, which
// can only happen before WASM first starts in a process.
describe('WASM threads in Node (shim for tfjs-backend-wasm 4.22.0)', () => {
  it('starts the threaded build with 2 threads and computes what the cpu backend computes', async () => {
    const info = await setupBackend({ backend: 'wasm', wasmThreads: 2 });
    expect(info.threadsOff).toBeUndefined();
    expect(info.threads).toBe(2);
    expect(describeBackend(info)).toMatch(/^backend: wasm \(SIMD, 2 threads\)/);
    const a = tf.randomNormal([96, 200], 0, 1, 'float32', 1);
    const b = tf.randomNormal([200, 130], 0, 1, 'float32', 2);
    const x = tf.randomNormal([2, 16, 16, 8], 0, 1, 'float32', 3);
    const k = tf.randomNormal([3, 3, 8, 4], 0, 1, 'float32', 4);
    const compute = () => [
      tf.matMul(a, b),
      // The native pack reads and writes the threaded build's heap, a SharedArrayBuffer.
      tf.matMul(b, b, true, false),
      tf.conv2d(x as tf.Tensor4D, k as tf.Tensor4D, 1, 'same'),
      tf.sigmoid(tf.add(a, 1)),
    ];
    // Growing the shared heap must leave reads, writes and the pack's views working.
    const big = tf.ones([4096, 1024]);
    expect(tf.sum(big).dataSync()[0]).toBe(4096 * 1024);
    const before = packStats().blas;
    const threaded = compute().map((t) => t.dataSync());
    if (info.native) expect(packStats().blas).toBeGreaterThan(before);
    await setupBackend({ backend: 'cpu', native: false });
    const reference = compute().map((t) => t.dataSync());
    for (let i = 0; i < reference.length; i++) {
      const want = reference[i]!;
      const got = threaded[i]!;
      let worst = 0;
      let scale = 0;
      for (let j = 0; j < want.length; j++) {
        worst = Math.max(worst, Math.abs(got[j]! - want[j]!));
        scale = Math.max(scale, Math.abs(want[j]!));
      }
      expect(worst / scale).toBeLessThan(1e-5);
    }
  });

  it('a process that used threaded WASM exits by itself when its work is done', () => {
    const script = `
      import * as tf from '@tensorflow/tfjs-core';
      import { setupBackend } from './src/backend/index.js';
      const info = await setupBackend({ backend: 'wasm', wasmThreads: 2 });
      console.log(info.threads, tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])).dataSync()[0]);
    `;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: PACKAGE_ROOT,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, VLA_WASM_THREADS: '' },
    });
    expect(run.error).toBeUndefined();
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe('2 64');
  });
});
