import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { isMainThread, threadId } from 'node:worker_threads';
import { NO_TRANS, type Sgemm, TRANS } from './gemm.js';
import { loadOneDnn, type OneDnn } from './onednn.js';

export { NO_TRANS, type Sgemm, TRANS } from './gemm.js';

/** The products' precision: float32 throughout, or bfloat16 operands with float32 accumulation. */
export type Precision = 'fp32' | 'bf16';

export interface Blas {
  /** The products as they run now: every kernel of the pack calls this (useProducts switches it). */
  sgemm: Sgemm;
  /** The precision `sgemm` runs at. */
  precision: Precision;
  /** OpenBLAS's float32 sgemm, kept while `sgemm` points at oneDNN's bf16 one. */
  fp32: Sgemm;
  /** oneDNN's bf16 products once asked for (loaded then), or why they cannot run here. */
  bf16: OneDnn | { error: string } | null;
  /** The shared library the binding resolved to: `openblas`, `mkl`, `blis`, or `unknown` off Linux. */
  library: string;
  /** Threads the library runs a large GEMM on. */
  threads: number;
  /** The OpenBLAS kernel family asked for through `OPENBLAS_CORETYPE` (ours or the user's), or null. */
  core: string | null;
  /** Set when that family leaves the CPU's AVX-512 unused (blasCoreNote). */
  coreNote: string | null;
}

export interface BlasOptions {
  /**
   * OpenBLAS threads (overrides `OPENBLAS_NUM_THREADS`; default DEFAULT_THREADS). OpenBLAS reads its
   * thread count once, when the library loads: this only takes effect on the first load in a process.
   */
  threads?: number;
  /** Loads the binding's package; tests pass their own to stand for a missing or broken install. */
  load?: (pkg: string) => unknown;
}

export const BLAS_PACKAGE = 'nblas';

const require = createRequire(import.meta.url);

/** This thread's binding once loaded (a thread loads the addon once, however often it asks). */
let workerBinding: unknown = null;

/**
 * The binding in a worker thread. nblas's addon is not context-aware: once one thread of a process has
 * loaded it, loading the same file again fails ("Module did not self-register"), and its JavaScript
 * wrapper then reports itself missing. A private copy of the addon file is a separate shared object to
 * the dynamic loader, so it registers afresh in this thread (and links the same OpenBLAS). The copies
 * stay on disk while the process lives: the loader knows a loaded object by its file's device and
 * inode, and a deleted copy's inode, reused by the next thread's copy (a policy worker, then the native
 * sampler's worker under it), made dlopen hand back the first copy unregistered. A later process
 * removes the folders of processes that are gone.
 */
function loadInWorker(pkg: string): unknown {
  if (workerBinding) return workerBinding;
  try {
    workerBinding = require(pkg);
    return workerBinding;
  } catch (first) {
    let addon: string;
    try {
      addon = path.join(path.dirname(require.resolve(pkg)), '..', 'build', 'Release', `${pkg}.node`);
    } catch {
      throw first;
    }
    removeStaleCopies(pkg);
    const dir = path.join(os.tmpdir(), `vla-${pkg}-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    const copy = path.join(dir, `${threadId}.node`);
    copyFileSync(addon, copy);
    const mod = { exports: {} as unknown };
    process.dlopen(mod, copy);
    workerBinding = mod.exports;
    return workerBinding;
  }
}

/** Removes addon copies left by processes that no longer run. */
function removeStaleCopies(pkg: string): void {
  const prefix = `vla-${pkg}-`;
  let names: string[];
  try {
    names = readdirSync(os.tmpdir()).filter((n) => n.startsWith(prefix));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(name.slice(prefix.length));
    if (!Number.isInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}

/** Libraries fast enough to beat WASM's own matmul; reference BLAS (Debian's `libblas3`) is not. */
const FAST_LIBRARIES: Array<[RegExp, string]> = [
  [/libopenblas/, 'openblas'],
  [/libmkl/, 'mkl'],
  [/libblis/, 'blis'],
];

/**
 * Which BLAS the process has mapped, from /proc/self/maps. Debian routes `libblas.so.3` through
 * alternatives, so the binding's link line (`-lblas`) says nothing about which one it got.
 */
function mappedLibrary(): string | null {
  let maps: string;
  try {
    maps = readFileSync('/proc/self/maps', 'utf8');
  } catch {
    return 'unknown';
  }
  for (const [pattern, name] of FAST_LIBRARIES) if (pattern.test(maps)) return name;
  const blas = maps.split('\n').find((l) => /libblas\.so/.test(l));
  return blas ? null : 'unknown';
}

/**
 * One thread unless asked for more. Measured on this 2-core machine shared with other work
 * (`npm run bench -- native` and `-- kernels`, load 8–16): with 2 threads, OpenBLAS's hand-offs between
 * its threads stalled whenever the other core was taken, so mid-sized products (a batch-1 expert layer,
 * [50,128]·[128,512]) ran 5× slower than WASM's and a B chunk 2.5× slower than without the pack, while
 * 1 thread was faster than WASM at every model shape. On a machine of its own, `--blas-threads 2` (or
 * OPENBLAS_NUM_THREADS=2) gains on large products (PyTorch here: 1.5× from its second thread).
 */
export const DEFAULT_THREADS = 1;

/** The AVX-512 subsets OpenBLAS's SkylakeX kernels use. */
const AVX512 = ['avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'];

/**
 * The OpenBLAS kernel family to ask for on this CPU (given /proc/cpuinfo's text), or null to leave
 * OpenBLAS's own choice: `SkylakeX` on every CPU with the AVX-512 subsets its kernels use. OpenBLAS
 * picks its kernels from the CPU's family and model numbers, and 0.3.21 (Debian 12's) knows none newer
 * than itself: AMD's Zen 4 and later ran on its AVX2 (Haswell) kernels, and a cloud VM's Intel Xeon
 * (family 6, model 207, Emerald Rapids) on its SSE3 (Prescott) ones. SkylakeX's sgemm is the one
 * OpenBLAS runs on every AVX-512 family it knows (Cooper Lake and Sapphire Rapids included), so asking
 * for it is never slower. Measured on the development machines, one thread: AMD EPYC, sgemm 1024³ 103 →
 * 194 GFLOP/s, a B chunk's products 32 → 20 ms; the Intel Xeon, a B training step (batch 32) 6.0 → 1.7 s.
 */
export function blasCoreFor(cpuinfo: string): string | null {
  return hasAvx512(cpuinfo) ? 'SkylakeX' : null;
}

function hasAvx512(cpuinfo: string): boolean {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '').trim().split(/\s+/));
  return AVX512.every((f) => flags.has(f));
}

/** OpenBLAS kernel families without AVX-512 (its names, lower-cased). */
const BELOW_AVX512 = new Set(
  'haswell zen sandybridge bulldozer piledriver steamroller excavator nehalem core2 penryn dunnington atom prescott'.split(
    ' ',
  ),
);

/**
 * A note for the backend line when `OPENBLAS_CORETYPE` (set by the user or the machine's image, which
 * we never override) keeps OpenBLAS off AVX-512 kernels that the CPU has; null otherwise.
 */
export function blasCoreNote(cpuinfo: string, coretype: string | undefined): string | null {
  if (!coretype || !BELOW_AVX512.has(coretype.toLowerCase()) || !hasAvx512(cpuinfo)) return null;
  return `OPENBLAS_CORETYPE=${coretype} leaves this CPU's AVX-512 unused (SkylakeX kernels: ~1.9× the sgemm speed on an AMD EPYC)`;
}

function cpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

/**
 * Gives the process environment what OpenBLAS reads when it loads, unless the user set it: a thread
 * count (DEFAULT_THREADS) and, on CPUs it misreads, its kernel family (blasCoreFor; `OPENBLAS_CORETYPE`
 * set by hand wins). Call it on the main
 * thread before starting workers: if a worker is the first to load OpenBLAS, the library reads the real
 * environment, and without a count it starts a thread per core. Measured here: a policy server worker
 * that loaded it so, beside a simulation worker, hung for good in OpenBLAS's `exec_blas_async` in 3 of 4
 * `vla sim eval --workers 2` runs on a loaded machine (0 of 8 with the count set).
 */
export function pinBlasEnv(): void {
  if (!isMainThread) return;
  if (threadsFromEnv() === undefined) process.env.OPENBLAS_NUM_THREADS = String(DEFAULT_THREADS);
  if (process.env.OPENBLAS_CORETYPE === undefined && process.arch === 'x64') {
    const core = blasCoreFor(cpuinfo());
    if (core !== null) process.env.OPENBLAS_CORETYPE = core;
  }
}

/** The thread count OpenBLAS started with: later requests in the same process cannot change it. */
let threadsAtLoad: number | null = null;

/** The variables OpenBLAS reads its thread count from, in its own order of precedence. */
function threadsFromEnv(): string | undefined {
  return process.env.OPENBLAS_NUM_THREADS ?? process.env.GOTO_NUM_THREADS ?? process.env.OMP_NUM_THREADS;
}

function firstLine(e: unknown): string {
  const err = e as { code?: string; message?: string };
  if (err?.code === 'MODULE_NOT_FOUND' || err?.code === 'ERR_MODULE_NOT_FOUND')
    return `${BLAS_PACKAGE} not installed`;
  return `${BLAS_PACKAGE}: ${(err?.message ?? String(e)).split('\n')[0]!.slice(0, 160)}`;
}

/** Loads the BLAS binding; returns it, or a one-line reason why it cannot be used. Never throws. */
export function loadBlas(opts: BlasOptions = {}): Blas | { error: string } {
  const load = opts.load ?? ((pkg: string) => (isMainThread ? require(pkg) : loadInWorker(pkg)));
  // A worker's process.env is its own copy: setting it there never reaches the C environment OpenBLAS
  // reads when it loads, so only the main thread sets it (and startWorker does before any worker runs).
  if (threadsAtLoad === null && isMainThread) {
    if (opts.threads !== undefined) process.env.OPENBLAS_NUM_THREADS = String(opts.threads);
    pinBlasEnv();
  }
  let mod: { sgemm?: unknown };
  try {
    mod = load(BLAS_PACKAGE) as { sgemm?: unknown };
  } catch (e) {
    return { error: firstLine(e) };
  }
  if (typeof mod?.sgemm !== 'function')
    return { error: `${BLAS_PACKAGE} has no sgemm (not a CBLAS binding?)` };
  const library = mappedLibrary();
  if (library === null) {
    return {
      error: `${BLAS_PACKAGE} is linked to the reference BLAS, not OpenBLAS (apt-get install libopenblas-dev)`,
    };
  }
  const sgemm = mod.sgemm as Sgemm;
  // A 2×2 product checks the binding actually computes (a broken build can load and return garbage).
  const a = new Float32Array([1, 2, 3, 4]);
  const c = new Float32Array(4);
  try {
    sgemm(NO_TRANS, TRANS, 2, 2, 2, 1, a, 2, a, 2, 0, c, 2);
  } catch (e) {
    return { error: firstLine(e) };
  }
  if (c.join() !== '5,11,11,25')
    return { error: `${BLAS_PACKAGE}: sgemm self-check gave ${c.join()}, expected 5,11,11,25` };
  if (threadsAtLoad === null) {
    const cores = os.availableParallelism();
    const asked = Number.parseInt(threadsFromEnv() ?? '', 10);
    threadsAtLoad = Number.isFinite(asked) && asked > 0 ? Math.min(asked, cores) : cores;
  }
  const core = process.env.OPENBLAS_CORETYPE || null;
  const coreNote = core && process.arch === 'x64' ? blasCoreNote(cpuinfo(), core) : null;
  return {
    sgemm,
    precision: 'fp32',
    fp32: sgemm,
    bf16: null,
    library,
    threads: threadsAtLoad,
    core,
    coreNote,
  };
}

/**
 * Runs every product of the pack at `precision` from now on (the kernels call `blas.sgemm`). Returns
 * null, or the one-line reason bf16 was asked for and cannot run here: the products then stay float32.
 */
export function useProducts(blas: Blas, precision: Precision): string | null {
  if (precision === 'fp32') {
    blas.sgemm = blas.fp32;
    blas.precision = 'fp32';
    return null;
  }
  blas.bf16 ??= loadOneDnn(blas.threads);
  if ('error' in blas.bf16) return `bf16 products off: ${blas.bf16.error}`;
  blas.sgemm = blas.bf16.sgemmBf16;
  blas.precision = 'bf16';
  return null;
}

/** What runs the products now, for the backend line: `fp32 on openblas` or `bf16 on oneDNN 2.6.3, …`. */
export function describeProducts(blas: Blas): string {
  return blas.precision === 'bf16' && blas.bf16 && !('error' in blas.bf16)
    ? `bf16 products on ${blas.bf16.describe}`
    : `fp32 products on ${blas.library}`;
}
