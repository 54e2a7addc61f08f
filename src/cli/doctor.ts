import { execFileSync } from 'node:child_process';
import type { Command } from 'commander';
import type { BackendInfo } from '../backend/index.js';
import type { Tool } from '../data/ffmpeg.js';
import { computeBackend } from './context.js';
import { table } from './output.js';

/** Median GFLOP/s of an n×n float32 matmul on the active backend. */
async function matmulGflops(n: number, reps: number): Promise<number> {
  const tf = await import('@tensorflow/tfjs-core');
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  const times: number[] = [];
  for (let i = 0; i < reps + 1; i++) {
    const t0 = performance.now();
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
    if (i > 0) times.push(performance.now() - t0);
  }
  a.dispose();
  b.dispose();
  times.sort((x, y) => x - y);
  return (2 * n ** 3) / (times[Math.floor(times.length / 2)]! * 1e6);
}

async function toolVersion(tool: Tool, args: string[]): Promise<string> {
  const { toolPath } = await import('../data/ffmpeg.js');
  try {
    return execFileSync(toolPath(tool), args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).split('\n')[0]!;
  } catch {
    return 'not found';
  }
}

/** The kernel pack's state: BLAS and the fused element-wise kernels, each on or why not. */
function packLine(info: BackendInfo): string {
  if (!info.native) return `off (${info.nativeOff ?? `not for the ${info.name} backend`})`;
  const fused = info.native.fused === true ? 'on' : `off (${info.native.fused})`;
  return `BLAS ${info.native.library}${info.native.core ? ` (${info.native.core} kernels)` : ''} on ${info.native.threads} thread(s); fused element-wise kernels ${fused}`;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check this machine: backends, tools, configs, and a quick matmul speed test')
    .option('--size <n>', 'matmul size for the speed test', '512')
    .action(async (opts: { size: string }) => {
      const { BACKENDS, BACKEND_PACKAGES } = await import('../backend/index.js');
      const { loadOneDnn } = await import('../backend/native/onednn.js');
      const { listNamed } = await import('../config/load.js');
      const info = await computeBackend(program);
      const rows = BACKENDS.map((b) => {
        const why = info.skipped.find((s) => s.startsWith(`${BACKEND_PACKAGES[b]}:`));
        const state =
          b === info.name ? 'active' : why ? why.slice(BACKEND_PACKAGES[b].length + 2) : 'available';
        return [b, BACKEND_PACKAGES[b], state];
      });
      console.log(table(['backend', 'package', 'status'], rows));
      console.log(`\nnative kernel pack: ${packLine(info)}`);
      const bf16 = info.native ? loadOneDnn(info.native.threads) : { error: 'the native kernel pack is off' };
      console.log(
        `products: fp32 on ${info.native?.library ?? info.name}; bf16 (train.precision, serve.precision) ${'error' in bf16 ? `off: ${bf16.error}` : `on ${bf16.describe}`}`,
      );
      const n = Number(opts.size);
      const gflops = await matmulGflops(n, 5);
      console.log(`\nmatmul ${n}x${n} float32 on ${info.name}: ${gflops.toFixed(1)} GFLOP/s (median of 5)`);
      console.log(`node ${process.version}, ffmpeg: ${await toolVersion('ffmpeg', ['-version'])}`);
      console.log(
        `${listNamed('configs').length} named configs, ${listNamed('robots').length} robot specs (vla config list)`,
      );
    });
}
