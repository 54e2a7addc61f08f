import type { Command } from 'commander';
import { type BackendInfo, type BackendName, describeBackend, setupBackend } from '../backend/index.js';

/** Every command that computes calls this first: it sets up TensorFlow.js and prints the backend line. */
export async function computeBackend(program: Command): Promise<BackendInfo> {
  const opts = program.opts<{ backend?: BackendName | 'auto' }>();
  const info = await setupBackend({ backend: opts.backend });
  console.error(describeBackend(info));
  return info;
}
