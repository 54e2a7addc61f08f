import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../config/errors.js';

export const BACKENDS = ['node-gpu', 'node', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

/** The npm package that provides each backend. */
export const BACKEND_PACKAGES: Record<BackendName, string> = {
  'node-gpu': '@tensorflow/tfjs-node-gpu',
  node: '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

export interface BackendInfo {
  name: BackendName;
  /** tfjs's own name for it (`tensorflow`, `wasm`, `cpu`). */
  tfName: string;
  threads: number;
  simd: boolean;
  /** Why each preferred backend was passed over, in order of preference. */
  skipped: string[];
}

export interface BackendOptions {
  /** `auto` (default) walks node-gpu ▸ node ▸ wasm ▸ cpu; a name insists on that one. */
  backend?: BackendName | 'auto';
  /** Loads a backend's package; tests pass their own to stand for packages that are absent or broken. */
  load?: (pkg: string) => unknown;
}

const require = createRequire(import.meta.url);

/** A CUDA GPU is visible when the NVIDIA driver's device nodes exist (what libtensorflow itself opens). */
export function cudaVisible(): boolean {
  return existsSync('/proc/driver/nvidia/version') || existsSync('/dev/nvidiactl');
}

function firstLine(e: unknown): string {
  const err = e as { code?: string; message?: string };
  if (err?.code === 'MODULE_NOT_FOUND' || err?.code === 'ERR_MODULE_NOT_FOUND') return 'not installed';
  return (err?.message ?? String(e)).split('\n')[0]!.slice(0, 160);
}

/** Try one backend: load its package and make it tfjs's active backend. Returns why not, or null. */
async function tryBackend(name: BackendName, load: (pkg: string) => unknown): Promise<string | null> {
  try {
    if (name === 'node-gpu' && !cudaVisible()) return 'no CUDA GPU visible (no NVIDIA driver)';
    load(BACKEND_PACKAGES[name]);
    const tfName = name === 'node-gpu' || name === 'node' ? 'tensorflow' : name;
    if (!(await tf.setBackend(tfName))) return `tfjs could not initialise the ${tfName} backend`;
    return null;
  } catch (e) {
    return firstLine(e);
  }
}

let active: BackendInfo | null = null;

/**
 * Set up TensorFlow.js on the best backend this machine has (or the one asked for by `--backend` or
 * `VLA_BACKEND`) and report what it got.
 */
export async function setupBackend(opts: BackendOptions = {}): Promise<BackendInfo> {
  const wanted = opts.backend ?? (process.env.VLA_BACKEND as BackendName | 'auto' | undefined) ?? 'auto';
  if (wanted !== 'auto' && !BACKENDS.includes(wanted)) {
    throw new UserError(`backend "${wanted}": expected one of auto, ${BACKENDS.join(', ')}`);
  }
  if (active && !opts.load && (wanted === 'auto' || wanted === active.name)) return active;
  const load = opts.load ?? ((pkg: string) => require(pkg));
  const order = wanted === 'auto' ? BACKENDS : [wanted];
  const skipped: string[] = [];
  for (const name of order) {
    const why = await tryBackend(name, load);
    if (why !== null) {
      skipped.push(`${BACKEND_PACKAGES[name]}: ${why}`);
      continue;
    }
    const simd = name === 'wasm' ? Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) : false;
    const threads = name === 'node' || name === 'node-gpu' ? os.availableParallelism() : 1;
    active = { name, tfName: tf.getBackend(), threads, simd, skipped };
    return active;
  }
  if (wanted !== 'auto') {
    const installed = BACKENDS.filter((b) => b !== wanted && isInstalled(b, load));
    throw new UserError(
      `backend ${wanted} is not available (${skipped[0]}); installed: ${installed.join(', ') || 'none'}`,
    );
  }
  throw new UserError(`no TensorFlow.js backend could start: ${skipped.join('; ')}`);
}

function isInstalled(name: BackendName, load: (pkg: string) => unknown): boolean {
  if (name === 'wasm' || name === 'cpu') {
    try {
      load(BACKEND_PACKAGES[name]);
      return true;
    } catch {
      return false;
    }
  }
  // Loading a native package registers its backend; resolving is enough to know it is there.
  try {
    require.resolve(BACKEND_PACKAGES[name]);
    return name !== 'node-gpu' || cudaVisible();
  } catch {
    return false;
  }
}

/** The one line every computing command prints: `backend: wasm (SIMD, 1 thread) · tfjs 4.22.0`. */
export function describeBackend(info: BackendInfo): string {
  const detail = [info.simd ? 'SIMD' : null, `${info.threads} thread${info.threads === 1 ? '' : 's'}`]
    .filter(Boolean)
    .join(', ');
  const passed = info.skipped.length > 0 ? ` (passed over: ${info.skipped.join('; ')})` : '';
  return `backend: ${info.name} (${detail}) · tfjs ${tf.version_core}${passed}`;
}
