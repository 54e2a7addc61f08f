/**
 * `vla sim record`: scripted-expert demonstrations written as a LeRobot dataset (state, action, camera
 * videos, the task prompt, fps). Episodes run their full length; one that never reached success is
 * discarded and counted, and the next seed is tried.
 *
 * With `actionNoise`, the arm executes the expert's action plus a slowly drifting joint offset while the
 * dataset records the expert's own action (DART, Laskey et al. 2017): the states wander off the expert's
 * path and the labels lead back to it, so a policy sees how to recover from its own small errors.
 */
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import { createDataset, type WriteFormat } from '../data/writer.js';
import type { Agent } from './agent.js';
import { SimEnv, type SimObservation } from './env.js';
import { type Plan, WaypointExpert } from './expert.js';
import { specCameraNames } from './policy-agent.js';
import { simProvenance } from './provenance.js';
import { Rng } from './rng.js';
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
  /** Executed actions drift from the recorded expert actions by this much (arm joints only). */
  actionNoise?: ActionNoise;
  /** Give up after this many failed episodes (default: as many as requested, plus 5). */
  maxFailures?: number;
  onEpisode?(saved: number, failed: number, success: boolean): void;
}

export interface ActionNoise {
  /** Stationary standard deviation of each joint's offset, in the action's units (radians). */
  std: number;
  /** Correlation time in control steps: an Ornstein-Uhlenbeck offset, not white noise per step. */
  tau: number;
}

/**
 * The expert, executed with a drifting offset on every arm joint (not the grippers). `recorded` is the
 * expert's own last action, the label; the env gets the perturbed one. The offsets draw from a generator
 * seeded by a hash of the episode's seed (the scene draws from the seed itself), so a recording is
 * reproducible.
 */
export class PerturbedExpert implements Agent {
  recorded: Float32Array = new Float32Array(0);
  private offset: Float64Array = new Float64Array(0);
  private rng = new Rng(0);
  private joints: number[] = [];

  constructor(
    private readonly expert: Agent,
    private readonly noise: ActionNoise,
  ) {
    if (!(noise.std >= 0) || !(noise.tau >= 1)) {
      throw new UserError(
        `action noise: expected std >= 0 and tau >= 1 step, got std ${noise.std} and tau ${noise.tau}`,
      );
    }
  }

  /** Before each episode's reset: the noise of that seed. */
  seed(seed: number): void {
    this.rng = new Rng(Math.imul(seed, 0x9e3779b1) ^ 0x5eed);
  }

  reset(env: SimEnv): Promise<void> | void {
    this.joints = [];
    let k = 0;
    for (const arm of env.robot.arms) {
      for (let j = 0; j < arm.joints.length; j++) this.joints.push(k + j);
      k += arm.joints.length + 1;
    }
    // Each offset starts from its stationary distribution, so the first steps are perturbed too.
    this.offset = Float64Array.from(this.joints, () => this.noise.std * this.rng.normal());
    return this.expert.reset(env);
  }

  async act(obs: SimObservation, env: SimEnv): Promise<Float32Array> {
    const clean = await this.expert.act(obs, env);
    this.recorded = clean;
    const out = Float32Array.from(clean);
    const keep = 1 - 1 / this.noise.tau;
    const kick = this.noise.std * Math.sqrt(1 - keep * keep);
    for (const [i, j] of this.joints.entries()) {
      this.offset[i] = keep * this.offset[i]! + kick * this.rng.normal();
      out[j] = out[j]! + this.offset[i]!;
    }
    return out;
  }

  close(): Promise<void> | void {
    return this.expert.close?.();
  }
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
    extraInfo: {
      simulation: simProvenance(task),
      ...(opts.actionNoise ? { recording: { action_noise: opts.actionNoise } } : {}),
    },
    features: {
      state: { names: spec.state.names },
      action: { names: spec.action.names },
      cameras: cameras.map((name) => ({ name, height, width })),
    },
  });
  const env = await SimEnv.create(task, { cameras, width, height });
  const scripted = await WaypointExpert.create(env, plan);
  const perturbed = opts.actionNoise ? new PerturbedExpert(scripted, opts.actionNoise) : null;
  const agent: Agent = perturbed ?? scripted;
  const maxFailures = opts.maxFailures ?? opts.episodes + 5;
  const report: RecordReport = { dir: writer.dir, saved: 0, failed: 0, frames: 0, seeds: [] };
  try {
    for (let attempt = 0; report.saved < opts.episodes; attempt++) {
      const seed = opts.seed + attempt;
      perturbed?.seed(seed);
      const result = await runEpisode(env, agent, attempt, seed, {
        onStep: (obs, action) => {
          writer.addFrame({
            state: obs.state,
            action: perturbed?.recorded ?? action,
            images: obs.images,
            task: obs.prompt,
          });
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
    await agent.close?.();
    env.free();
  }
  return report;
}
