import type { Command } from 'commander';
import {
  type BackendInfo,
  type BackendName,
  describeBackend,
  parseThreads,
  setupBackend,
} from '../backend/index.js';

/** Every command that computes calls this first: it sets up TensorFlow.js and prints the backend line. */
export async function computeBackend(program: Command): Promise<BackendInfo> {
  const opts = program.opts<{
    backend?: BackendName | 'auto';
    native?: boolean;
    blasThreads?: string;
    wasmThreads?: string;
  }>();
  const info = await setupBackend({
    backend: opts.backend,
    // Only an explicit --no-native overrides VLA_NATIVE (commander defaults the flag to true).
    native: opts.native === false ? false : undefined,
    blasThreads:
      opts.blasThreads === undefined ? undefined : parseThreads(opts.blasThreads, '--blas-threads'),
    wasmThreads:
      opts.wasmThreads === undefined ? undefined : parseThreads(opts.wasmThreads, '--wasm-threads'),
  });
  console.error(describeBackend(info));
  return info;
}
