import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../config/errors.js';
import { registerGradients } from './gradients.js';
import {
  BLAS_PACKAGE,
  type Blas,
  describeProducts,
  loadBlas,
  type Precision,
  useProducts,
} from './native/blas.js';
import { installFused } from './native/fused.js';
import { cpuHost, wasmHost } from './native/matmul.js';
import { installPack, PACK_HOSTS, type PackHost, removePack } from './native/pack.js';
import { startThreadedWasm } from './native/wasm-threads.js';

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
  /**
   * The native kernel pack (matmuls on BLAS), when it is active; `fused` says whether its fused
   * element-wise kernels (WASM only) run too, or why not.
   */
  native: {
    library: string;
    threads: number;
    core: string | null;
    coreNote: string | null;
    fused: true | string;
    /** What runs the products: `fp32 products on openblas`, `bf16 products on oneDNN 2.6.3, …`. */
    products: string;
    /** Why bf16 products were asked for and are not running. */
    productsOff?: string;
  } | null;
  /** Why the native kernel pack is off, when the backend could host it. */
  nativeOff?: string;
  /** Why WASM stayed single-threaded although threads were asked for. */
  threadsOff?: string;
}

export interface BackendOptions {
  /** `auto` (default) walks node-gpu ▸ node ▸ wasm ▸ cpu; a name insists on that one. */
  backend?: BackendName | 'auto';
  /** Loads a backend's package; tests pass their own to stand for packages that are absent or broken. */
  load?: (pkg: string) => unknown;
  /**
   * The native kernel pack: matmuls on OpenBLAS through the `nblas` binding, under the wasm or cpu
   * backend. On by default where it loads; `false` (`--no-native`, `VLA_NATIVE=0`) keeps the host's own.
   */
  native?: boolean;
  /** OpenBLAS threads (default: `OPENBLAS_NUM_THREADS`, else 1: see native/blas.ts). Fixed once the library loads. */
  blasThreads?: number;
  /**
   * WASM threads (default `VLA_WASM_THREADS`, else 1). More than 1 starts tfjs-backend-wasm's threaded
   * build through a shim (see native/wasm-threads.ts); it only takes effect before WASM first starts.
   */
  wasmThreads?: number;
  /** The products' precision (default fp32); setProductPrecision changes it later. */
  precision?: Precision;
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
/** The kernel pack's products, while the pack is installed. */
let activeBlas: Blas | null = null;

/**
 * Runs the kernel pack's products at `precision` from now on (a config's `train.precision`, a
 * server's `serve.precision`). Returns null, or why bf16 cannot run here: the products then stay
 * float32 and the backend line says why.
 */
export function setProductPrecision(precision: Precision): string | null {
  if (activeBlas === null) {
    if (precision === 'fp32') return null;
    return `bf16 products off: they run on the native kernel pack, which is off (${active?.nativeOff ?? 'no backend set up'})`;
  }
  const off = useProducts(activeBlas, precision);
  if (active?.native) {
    active.native.products = describeProducts(activeBlas);
    if (off) active.native.productsOff = off;
    else delete active.native.productsOff;
  }
  return off;
}

/**
 * What the last setupBackend() set up, or null before it ran. Model code can read `native` to shape its
 * matmuls: with the pack on, transposed and batched matmuls run on BLAS as fast as plain ones, so
 * transposing explicitly first only adds a copy.
 */
export function activeBackend(): BackendInfo | null {
  return active;
}

/**
 * Set up TensorFlow.js on the best backend this machine has (or the one asked for by `--backend` or
 * `VLA_BACKEND`) and report what it got.
 */
export async function setupBackend(opts: BackendOptions = {}): Promise<BackendInfo> {
  const wanted = opts.backend ?? (process.env.VLA_BACKEND as BackendName | 'auto' | undefined) ?? 'auto';
  if (wanted !== 'auto' && !BACKENDS.includes(wanted)) {
    throw new UserError(`backend "${wanted}": expected one of auto, ${BACKENDS.join(', ')}`);
  }
  const native = opts.native ?? process.env.VLA_NATIVE !== '0';
  await registerGradients();
  if (active && !opts.load && (wanted === 'auto' || wanted === active.name)) {
    active = { ...active, ...(await configurePack(active.name, native, opts)) };
    return active;
  }
  const load = opts.load ?? ((pkg: string) => require(pkg));
  const order = wanted === 'auto' ? BACKENDS : [wanted];
  const skipped: string[] = [];
  const wasmThreads = opts.wasmThreads ?? parseThreads(process.env.VLA_WASM_THREADS, 'VLA_WASM_THREADS') ?? 1;
  for (const name of order) {
    let threadsOff: string | undefined;
    let why: string | null;
    if (name === 'wasm' && wasmThreads > 1 && !wasmStarted()) {
      threadsOff = await tryThreadedWasm(load, wasmThreads);
      why = threadsOff === undefined ? null : await tryBackend(name, load);
    } else {
      why = await tryBackend(name, load);
      if (name === 'wasm' && wasmThreads > 1 && wasmThreadCount(load) < wasmThreads) {
        threadsOff = 'WASM already started with fewer threads in this process';
      }
    }
    if (why !== null) {
      skipped.push(`${BACKEND_PACKAGES[name]}: ${why}`);
      continue;
    }
    const simd = name === 'wasm' ? Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) : false;
    const threads =
      name === 'node' || name === 'node-gpu'
        ? os.availableParallelism()
        : name === 'wasm'
          ? wasmThreadCount(load)
          : 1;
    // The binding loads by loadBlas's own rule unless a test substitutes `load`: a worker thread needs a
    // private copy of the addon once the process has loaded it (native/blas.ts), which plain require
    // cannot give, and the policy server's workers fell back to WASM with "nblas not installed".
    const pack = await configurePack(name, native, opts);
    active = {
      name,
      tfName: tf.getBackend(),
      threads,
      simd,
      skipped,
      ...pack,
      ...(threadsOff ? { threadsOff } : {}),
    };
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

/** A thread count from a flag or variable; `where` names it in the error. */
export function parseThreads(value: string | undefined, where: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new UserError(`${where}: expected a whole number of threads ≥ 1, got ${JSON.stringify(value)}`);
  return n;
}

/** Whether tfjs has already started the wasm backend in this process (its thread count is then fixed). */
function wasmStarted(): boolean {
  return tf.engine().registry.wasm !== undefined;
}

function wasmThreadCount(load: (pkg: string) => unknown): number {
  try {
    return (load(BACKEND_PACKAGES.wasm) as { getThreadsCount(): number }).getThreadsCount();
  } catch {
    return 1;
  }
}

/** Starts threaded WASM; returns why not (WASM then starts single-threaded as before), or undefined. */
async function tryThreadedWasm(load: (pkg: string) => unknown, threads: number): Promise<string | undefined> {
  try {
    const pkg = load(BACKEND_PACKAGES.wasm) as Parameters<typeof startThreadedWasm>[0];
    await startThreadedWasm(pkg, threads);
    return undefined;
  } catch (e) {
    return firstLine(e);
  }
}

/** Installs or removes the native kernel pack on the chosen backend; says what is active and why not. */
async function configurePack(
  name: BackendName,
  wanted: boolean,
  opts: BackendOptions,
): Promise<Pick<BackendInfo, 'native' | 'nativeOff'>> {
  const host = PACK_HOSTS.find((h) => h === name) as PackHost | undefined;
  for (const other of PACK_HOSTS) if (other !== host) removePack(other);
  activeBlas = null;
  if (host === undefined) return { native: null };
  if (!wanted) {
    removePack(host);
    return { native: null, nativeOff: '--no-native or VLA_NATIVE=0' };
  }
  const loaded = loadBlas({ load: opts.load, threads: opts.blasThreads });
  if ('error' in loaded) {
    removePack(host);
    return { native: null, nativeOff: loaded.error };
  }
  installPack(loaded, host);
  activeBlas = loaded;
  const productsOff = useProducts(loaded, opts.precision ?? 'fp32');
  const fused = host === 'wasm' ? ((await installFused()) ?? true) : 'the cpu backend has no WASM heap';
  const { library, threads, core, coreNote } = loaded;
  const products = describeProducts(loaded);
  return {
    native: { library, threads, core, coreNote, fused, products, ...(productsOff ? { productsOff } : {}) },
  };
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

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

/**
 * The one line every computing command prints, saying which kernels run the matmuls and whether the
 * fused element-wise ones run too:
 * `backend: wasm (SIMD, 1 thread) · kernels wasm+blas (openblas SkylakeX, 2 threads) + fused norm/gelu · tfjs 4.22.0`
 * (the kernel family when OPENBLAS_CORETYPE names one: see blasCoreFor).
 */
export function describeBackend(info: BackendInfo): string {
  const detail = [info.simd ? 'SIMD' : null, plural(info.threads, 'thread')].filter(Boolean).join(', ');
  const notes = [
    info.threadsOff ? `WASM threads off: ${info.threadsOff}` : null,
    info.skipped.length > 0 ? `passed over: ${info.skipped.join('; ')}` : null,
    info.native?.coreNote ?? null,
    info.native?.productsOff ?? null,
  ].filter(Boolean);
  let kernels = '';
  if (info.native) {
    const fused = info.native.fused === true ? ' + fused norm/gelu' : '';
    const lib = info.native.core ? `${info.native.library} ${info.native.core}` : info.native.library;
    const bf16 = info.native.products.startsWith('bf16') ? ` · ${info.native.products}` : '';
    kernels = ` · kernels ${info.name}+blas (${lib}, ${plural(info.native.threads, 'thread')})${fused}${bf16}`;
  } else if (info.nativeOff) kernels = ` · kernels ${info.name} (blas off: ${info.nativeOff})`;
  return `backend: ${info.name} (${detail})${kernels} · tfjs ${tf.version_core}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`;
}

/**
 * A float32 tensor's memory in place: a view of the WASM heap, or the cpu backend's own array. Writes
 * go straight into the tensor. Null on backends whose memory JavaScript cannot reach (tfjs-node), and
 * for other dtypes. A WASM view is only good until the next tensor allocation (the heap may grow).
 */
export function tensorMemory(t: tf.Tensor): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const name = tf.getBackend();
  if (name === 'wasm') return wasmHost(tf.backend()).view(t);
  if (name === 'cpu') return cpuHost(tf.backend()).view(t);
  return null;
}

/**
 * A float32 tensor of `shape` whose values `fill` writes (all of them: on WASM the memory holds
 * whatever was there before). On WASM it writes straight into the tensor's heap memory, which malloc
 * reuses step after step, so `fill` must not create tensors or run kernels (the heap could grow under
 * `out`); elsewhere it writes a new array that the backend keeps (cpu) or copies (tfjs-node).
 * Per-step model inputs (image patches, attention biases) are megabytes: built in a fresh JavaScript
 * array each step, every 4 KiB page of it faulted in (~11 µs each on these VMs), about 7% of B's
 * non-matmul time, for an array that WASM then copied into its heap anyway.
 */
export function filledTensor(shape: number[], fill: (out: Float32Array) => void): tf.Tensor {
  if (tf.getBackend() === 'wasm') {
    const host = wasmHost(tf.backend());
    const info = host.alloc(shape);
    try {
      fill(host.view(info));
    } catch (e) {
      tf.backend().disposeData(info.dataId);
      throw e;
    }
    return tf.engine().makeTensorFromTensorInfo(info);
  }
  const out = new Float32Array(shape.reduce((a, c) => a * c, 1));
  fill(out);
  return tf.tensor(out, shape, 'float32');
}

export { BLAS_PACKAGE };
