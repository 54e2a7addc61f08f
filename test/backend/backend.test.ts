import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { BACKEND_PACKAGES, describeBackend, setupBackend } from '../../src/backend/index.js';
import { UserError } from '../../src/config/errors.js';

const require = createRequire(import.meta.url);

/** Loads packages for real, except those named, which fail as a missing or broken install does. */
function loaderWithout(missing: Record<string, 'missing' | 'broken'>) {
  return (pkg: string) => {
    if (missing[pkg] === 'missing') {
      throw Object.assign(new Error(`Cannot find module '${pkg}'`), { code: 'MODULE_NOT_FOUND' });
    }
    if (missing[pkg] === 'broken') throw new Error('libtensorflow.so.2: cannot open shared object file');
    return require(pkg);
  };
}

describe('backend selection', () => {
  it('falls back past missing native packages to wasm, saying why', async () => {
    const info = await setupBackend({
      backend: 'auto',
      load: loaderWithout({ [BACKEND_PACKAGES['node-gpu']]: 'missing', [BACKEND_PACKAGES.node]: 'broken' }),
    });
    expect(info.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(info.skipped.join('\n')).toMatch(
      /tfjs-node: libtensorflow\.so\.2: cannot open shared object file/,
    );
    expect(describeBackend(info)).toMatch(/^backend: wasm \(.*threads?\)( · kernels .*)? · tfjs 4\.22\.0/);
    const sum = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).dataSync());
    expect(Array.from(sum)).toEqual([4, 6]);
  });

  it('falls back to cpu when wasm cannot load either', async () => {
    const info = await setupBackend({
      backend: 'auto',
      load: loaderWithout({
        [BACKEND_PACKAGES['node-gpu']]: 'missing',
        [BACKEND_PACKAGES.node]: 'missing',
        [BACKEND_PACKAGES.wasm]: 'broken',
      }),
    });
    expect(info.name).toBe('cpu');
    expect(info.skipped).toHaveLength(3);
  });

  it('an explicit backend that is not available is an error naming what is installed', async () => {
    const err = await setupBackend({
      backend: 'node',
      load: loaderWithout({ [BACKEND_PACKAGES.node]: 'missing' }),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/backend node is not available \(@tensorflow\/tfjs-node: not installed\)/);
    expect(err.message).toMatch(/installed: .*wasm, cpu/);
  });

  it('an explicit available backend is used; an unknown name is refused', async () => {
    expect((await setupBackend({ backend: 'cpu' })).name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    await expect(setupBackend({ backend: 'tpu' as never })).rejects.toThrow(
      /backend "tpu": expected one of auto, node-gpu, node, wasm, cpu/,
    );
  });

  it('VLA_BACKEND chooses when no option is given', async () => {
    process.env.VLA_BACKEND = 'wasm';
    try {
      expect((await setupBackend()).name).toBe('wasm');
    } finally {
      delete process.env.VLA_BACKEND;
    }
  });
});
