/**
 * `vla sim record`: scripted-expert demonstrations written as a LeRobot dataset (state, action, camera
 * videos, the task prompt, fps). Episodes run their full length; one that never reached success is
 * discarded and counted, and the next seed is tried.
 */
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import { createDataset, type WriteFormat } from '../data/writer.js';
import { SimEnv } from './env.js';
import { type Plan, WaypointExpert } from './expert.js';
import { specCameraNames } from './policy-agent.js';
import { simProvenance } from './provenance.js';
import { runEpisode } from './rollout.js';
import { getTask } from './tasks/index.js';

export interface RecordOptions {
  task: string;
  episodes: number;
  out: string;
  format: WriteFormat;
  seed: number;
  /** Camera frame size (the robot spec's, 224×224, by default). */
  width?: number;
  height?: number;
  /** Another scripted expert than the task's own (a variant, or one under development). */
  plan?: Plan;
  /** Give up after this many failed episodes (default: as many as requested, plus 5). */
  maxFailures?: number;
  onEpisode?(saved: number, failed: number, success: boolean): void;
}

export interface RecordReport {
  dir: string;
  saved: number;
  failed: number;
  frames: number;
  seeds: number[];
}

export async function recordDataset(opts: RecordOptions): Promise<RecordReport> {
  const { task, expert } = getTask(opts.task);
  const plan = opts.plan ?? expert;
  const spec = loadRobot(task.robot.name);
  const cameras = specCameraNames(spec).filter((c) => c in task.robot.cameras);
  const width = opts.width ?? 224;
  const height = opts.height ?? 224;
  // The writer first: it refuses a folder that is not empty before any simulation starts.
  const writer = await createDataset(opts.out, {
    fps: task.robot.controlHz,
    robotType: task.robot.name,
    format: opts.format,
    // Which scene (cameras, objects) the frames come from; checked again at training and evaluation.
    extraInfo: { simulation: simProvenance(task) },
    features: {
      state: { names: spec.state.names },
      action: { names: spec.action.names },
      cameras: cameras.map((name) => ({ name, height, width })),
    },
  });
  const env = await SimEnv.create(task, { cameras, width, height });
  const agent = await WaypointExpert.create(env, plan);
  const maxFailures = opts.maxFailures ?? opts.episodes + 5;
  const report: RecordReport = { dir: writer.dir, saved: 0, failed: 0, frames: 0, seeds: [] };
  try {
    for (let attempt = 0; report.saved < opts.episodes; attempt++) {
      const seed = opts.seed + attempt;
      const result = await runEpisode(env, agent, attempt, seed, {
        onStep: (obs, action) => {
          writer.addFrame({ state: obs.state, action, images: obs.images, task: obs.prompt });
        },
      });
      if (result.success) {
        report.frames += writer.pendingFrames;
        await writer.saveEpisode();
        report.saved++;
        report.seeds.push(seed);
      } else {
        writer.discardEpisode();
        report.failed++;
        if (report.failed > maxFailures) {
          throw new UserError(
            `${opts.task}: the expert failed ${report.failed} episode${report.failed === 1 ? '' : 's'} (saved ${report.saved}); giving up`,
          );
        }
      }
      opts.onEpisode?.(report.saved, report.failed, result.success);
    }
    await writer.finalize();
  } finally {
    agent.close();
    env.free();
  }
  return report;
}
