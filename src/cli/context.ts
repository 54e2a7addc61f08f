import type { Command } from 'commander';
import type { BackendInfo, BackendName } from '../backend/index.js';
import { UserError } from '../config/errors.js';
import type { FrameCacheOptions } from '../data/cache.js';
import type { SamplerChoice } from '../model/chunk-sampler.js';

/** Every command that computes calls this first: it sets up TensorFlow.js and prints the backend line. */
export async function computeBackend(program: Command): Promise<BackendInfo> {
  const { describeBackend, parseThreads, setupBackend } = await import('../backend/index.js');
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

/**
 * The frame cache's folder and in-memory limit as the environment asks: VLA_CACHE_DIR (a folder) and
 * VLA_CACHE_MEM_MB (caches up to this many MiB are read into memory); unset, the loader's defaults.
 */
export function frameCacheFromEnv(env: NodeJS.ProcessEnv = process.env): FrameCacheOptions {
  const out: FrameCacheOptions = {};
  if (env.VLA_CACHE_DIR) out.dir = env.VLA_CACHE_DIR;
  const mb = env.VLA_CACHE_MEM_MB;
  if (mb !== undefined && mb !== '') {
    const n = Number(mb);
    if (!Number.isFinite(n) || n < 0)
      throw new UserError(`VLA_CACHE_MEM_MB: expected a number of MiB >= 0, got "${mb}"`);
    out.memoryBytes = n * 1024 * 1024;
  }
  return out;
}

/**
 * The user's choice of chunk sampler from the environment, read here at the command's edge and passed
 * down: VLA_SAMPLER (`native`, the default, or `tfjs`) and VLA_SAMPLER_THREADS (1 or 2); anything else
 * is an error naming the variable.
 */
export function samplerChoiceFromEnv(env: NodeJS.ProcessEnv = process.env): SamplerChoice {
  const choice: SamplerChoice = {};
  const sampler = env.VLA_SAMPLER;
  if (sampler === 'tfjs') choice.sampler = 'tfjs';
  else if (sampler !== undefined && sampler !== '' && sampler !== 'native') {
    throw new UserError(`VLA_SAMPLER: expected native or tfjs, got "${sampler}"`);
  }
  const threads = env.VLA_SAMPLER_THREADS;
  if (threads !== undefined && threads !== '') {
    const n = Number(threads);
    if (n !== 1 && n !== 2) throw new UserError(`VLA_SAMPLER_THREADS: expected 1 or 2, got "${threads}"`);
    choice.threads = n;
  }
  return choice;
}
