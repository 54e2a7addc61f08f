import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import workerThreads from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';

/**
 * Multithreaded WASM in Node, for `@tensorflow/tfjs-backend-wasm` 4.22.0 exactly (it reaches into
 * that bundle's start-up): tfjs turns threads off in Node because Node's worker threads refuse the
 * `blob:` URLs it hands Emscripten for the worker script and for the module source each worker
 * evaluates. While the backend starts, this records the text of the Blobs tfjs creates, writes them to
 * temporary files and gives Emscripten their paths instead. Must run before the wasm backend's first
 * `tf.setBackend('wasm')`; the thread count cannot change afterwards in the same process.
 */

/** The version whose internals this relies on; any other refuses (and WASM stays single-threaded). */
export const WASM_THREADS_VERSION = '4.22.0';

/** The Emscripten module source tfjs wraps in a Blob for each worker to evaluate. */
const MODULE_SOURCE_PREFIX = 'var WasmBackendModuleThreadedSimd';

/** The bundle's module-level requires the module source refers to, which a worker evaluating it lacks. */
const BUNDLE_REQUIRES =
  "var require$$0 = require('fs'), require$$1 = require('path'), require$$3 = require('perf_hooks'), require$$4 = require('os'), commonjsGlobal = globalThis;\n";

interface WasmPackage {
  setThreadsCount(n: number): void;
  getThreadsCount(): number;
  version_wasm: string;
}

interface WasmModuleInternals {
  PThread?: { runningWorkers: Array<{ unref(): void }>; unusedWorkers: Array<{ unref(): void }> };
}

/**
 * Starts the wasm backend with `threads` threads. Returns the number it got. Throws (with a one-line
 * message) when it cannot, leaving tfjs's start-up as it was.
 */
export async function startThreadedWasm(pkg: WasmPackage, threads: number): Promise<number> {
  if (pkg.version_wasm !== WASM_THREADS_VERSION) {
    throw new Error(`WASM threads need tfjs-backend-wasm ${WASM_THREADS_VERSION}, found ${pkg.version_wasm}`);
  }
  if (typeof SharedArrayBuffer === 'undefined') throw new Error('WASM threads need SharedArrayBuffer');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-wasm-threads-'));
  const texts = new WeakMap<Blob, string>();
  let moduleFile: string | null = null;
  const OriginalBlob = globalThis.Blob;
  const originalCreate = URL.createObjectURL;
  let files = 0;
  const write = (text: string) => {
    const file = path.join(dir, `${files++}.js`);
    writeFileSync(file, text);
    return file;
  };
  class RecordingBlob extends OriginalBlob {
    constructor(...args: ConstructorParameters<typeof Blob>) {
      const [parts, options] = args;
      super(parts, options);
      if (parts?.every((p) => typeof p === 'string')) {
        const text = parts.join('');
        texts.set(this, text);
        if (text.startsWith(MODULE_SOURCE_PREFIX)) moduleFile = write(BUNDLE_REQUIRES + text);
      }
    }
  }
  URL.createObjectURL = (blob: Blob) => {
    const text = texts.get(blob);
    if (text === undefined) return originalCreate(blob);
    if (moduleFile === null) throw new Error('WASM threads: the worker script came before the module source');
    // The worker turns the module Blob it is sent into a URL and evaluates that file: point it at ours.
    const header = `URL.createObjectURL = () => ${JSON.stringify(moduleFile)}; URL.revokeObjectURL = () => {};\n`;
    return write(header + text);
  };
  globalThis.Blob = RecordingBlob;
  pkg.setThreadsCount(threads);
  // The backend caps its pool at half the logical cores (it assumes hyper-threads): report enough.
  // The workers run plain JS: without this they inherit the parent's flags (`--import tsx`, `-e`...),
  // which slows every one of the 8 pool workers' start or breaks it.
  const OriginalWorker = workerThreads.Worker;
  workerThreads.Worker = class extends OriginalWorker {
    constructor(file: string | URL, options: workerThreads.WorkerOptions = {}) {
      super(file, { execArgv: [], ...options });
    }
  };
  const originalCpus = os.cpus;
  os.cpus = () => {
    const cpus = originalCpus();
    return Array.from({ length: Math.max(cpus.length, 2 * threads) }, (_, i) => cpus[i % cpus.length]!);
  };
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  try {
    if (!(await tf.setBackend('wasm')))
      throw new Error('tfjs could not initialise the threaded wasm backend');
  } catch (e) {
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    throw e;
  } finally {
    globalThis.Blob = OriginalBlob;
    URL.createObjectURL = originalCreate;
    os.cpus = originalCpus;
    workerThreads.Worker = OriginalWorker;
  }
  // Idle pool workers must not keep the process alive after the work is done.
  const module = (tf.backend() as unknown as { wasm: WasmModuleInternals }).wasm;
  for (const w of [...(module.PThread?.runningWorkers ?? []), ...(module.PThread?.unusedWorkers ?? [])])
    w.unref();
  // Every worker has read its files once the backend is up.
  rmSync(dir, { recursive: true, force: true });
  return pkg.getThreadsCount();
}
