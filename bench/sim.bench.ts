/**
 * `npm run bench -- sim`: what simulation costs on this machine.
 * - an episode of aloha_transfer_cube (400 steps at 50 Hz) driven by the scripted expert: physics alone,
 *   and physics + one 224×224 camera rendered every step (the figure: episodes/minute/core);
 * - the renderer alone per frame at 224×224 and 640×480;
 * - `vla sim eval` throughput with 1 and 2 worker threads against a local zeros policy server (wall time,
 *   including each extra worker's start: a second or more of module loading).
 * Medians of a few runs; the machine is shared, so compare ratios within one run.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { table } from '../src/cli/output.js';
import { SimEnv } from '../src/sim/env.js';
import { runEval } from '../src/sim/eval.js';
import { WaypointExpert } from '../src/sim/expert.js';
import { Renderer } from '../src/sim/render.js';
import { runEpisode } from '../src/sim/rollout.js';
import { getTask } from '../src/sim/tasks/index.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function episodeSeconds(render: boolean, runs: number): Promise<number[]> {
  const { task, expert: plan } = getTask('aloha_transfer_cube');
  const env = await SimEnv.create(task, { cameras: render ? ['cam_high'] : [] });
  const expert = await WaypointExpert.create(env, plan);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await runEpisode(env, expert, i, i);
    times.push((performance.now() - t0) / 1000);
  }
  expert.close();
  env.free();
  return times;
}

async function frameMs(width: number, height: number, frames: number): Promise<number> {
  const { task } = getTask('aloha_transfer_cube');
  const env = await SimEnv.create(task);
  env.reset(0);
  const r = new Renderer(env.sim);
  const cam = env.sim.id('camera', 'cam_high');
  const times: number[] = [];
  for (let i = 0; i < frames; i++) {
    const t0 = performance.now();
    r.render(cam, width, height);
    times.push(performance.now() - t0);
  }
  env.free();
  return median(times);
}

/**
 * Full-length transfer-cube episodes (400 steps, three cameras rendered at each server call), as an eval
 * runs them: each extra worker costs a second or two of module loading, which a run of a few dozen
 * such episodes amortises as real evaluations do.
 */
async function evalSeconds(workers: number, episodes: number, url: string): Promise<number> {
  const t0 = performance.now();
  const ev = await runEval({ task: 'aloha_transfer_cube', url, episodes, workers, seed: 0, videos: 0 });
  if (ev.summary.failed > 0) throw new Error(`eval bench: ${ev.results.find((r) => r.error)?.error}`);
  return (performance.now() - t0) / 1000;
}

export async function run(): Promise<void> {
  const physics = await episodeSeconds(false, 3);
  const rendered = await episodeSeconds(true, 3);
  const rows = [
    [
      'expert episode, physics + IK only (400 steps)',
      `${median(physics).toFixed(2)} s`,
      `${(60 / median(physics)).toFixed(1)}`,
    ],
    [
      'expert episode + cam_high 224x224 every step',
      `${median(rendered).toFixed(2)} s`,
      `${(60 / median(rendered)).toFixed(1)}`,
    ],
  ];
  console.log(table(['aloha_transfer_cube (one thread)', 'median', 'episodes/min/core'], rows));
  console.log('');
  const small = await frameMs(224, 224, 50);
  const large = await frameMs(640, 480, 20);
  console.log(
    table(
      ['render cam_high', 'median ms/frame'],
      [
        ['224x224', small.toFixed(2)],
        ['640x480', large.toFixed(2)],
      ],
    ),
  );
  console.log('');
  // The policy server in its own process, as `vla serve` runs beside `vla sim eval --url`: this
  // process's threads only simulate, render and talk to it.
  const port = 19_000 + Math.floor(Math.random() * 1000);
  const server = spawn(
    process.execPath,
    [
      path.resolve(import.meta.dirname, '../bin/vla.js'),
      'serve',
      '--robot',
      'aloha_sim',
      '--policy',
      'zeros',
      '--port',
      String(port),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    server.stdout!.on('data', (d: Buffer) => d.toString().includes('serving ') && resolve());
    server.once('exit', (code) => reject(new Error(`vla serve exited with ${code}`)));
  });
  const url = `ws://127.0.0.1:${port}`;
  const episodes = 160;
  const one = await evalSeconds(1, episodes, url);
  const two = await evalSeconds(2, episodes, url);
  // The machine's own ceiling: two processes sharing nothing but the server, each with half the episodes.
  const share = () =>
    new Promise<number>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', path.join(import.meta.dirname, 'sim-share.ts'), url, String(episodes / 2)],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.once('exit', (code) =>
        code === 0 ? resolve(Number(out.trim())) : reject(new Error(`share exited ${code}`)),
      );
    });
  const t0 = performance.now();
  await Promise.all([share(), share()]);
  const procs = (performance.now() - t0) / 1000;
  server.kill('SIGINT');
  console.log(
    table(
      [
        `vla sim eval aloha_transfer_cube, ${episodes} episodes, 3 cameras 224x224 (cores: ${os.availableParallelism()})`,
        'wall',
        'episodes/min',
        'speedup',
      ],
      [
        ['--workers 1', `${one.toFixed(1)} s`, ((episodes / one) * 60).toFixed(1), '1.00x'],
        [
          '--workers 2',
          `${two.toFixed(1)} s`,
          ((episodes / two) * 60).toFixed(1),
          `${(one / two).toFixed(2)}x`,
        ],
        [
          "2 separate processes (the machine's ceiling)",
          `${procs.toFixed(1)} s`,
          ((episodes / procs) * 60).toFixed(1),
          `${(one / procs).toFixed(2)}x`,
        ],
      ],
    ),
  );
}
