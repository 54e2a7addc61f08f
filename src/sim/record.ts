/**
 * `vla sim record`: scripted-expert demonstrations written as a LeRobot dataset (state, action, camera
 * videos, the task prompt, fps). Episodes run their full length; one that never reached success is
 * discarded and counted, and the next seed is tried. Each episode keeps the seed it was recorded from,
 * so a recording that was killed can be resumed with the seeds it would have gone on with.
 *
 * With `actionNoise`, the arm executes the expert's action plus a slowly drifting joint offset while the
 * dataset records the expert's own action (DART, Laskey et al. 2017): the states wander off the expert's
 * path and the labels lead back to it, so a policy sees how to recover from its own small errors.
 */
import { existsSync, readdirSync } from 'node:fs';
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import { resumeDataset } from '../data/resume.js';
import { type CreateOptions, createDataset, type DatasetWriter, type WriteFormat } from '../data/writer.js';
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
  /**
   * Go on with the recording `out` holds (started with the same options, then killed): its complete
   * episodes stay, the rest are recorded from the seeds an uninterrupted recording would have used.
   */
  resume?: boolean;
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
  /** Episodes in the dataset, those kept from before a resume included. */
  saved: number;
  /** Failed expert episodes, those before a resume included. */
  failed: number;
  /** Frames recorded by this call. */
  frames: number;
  /** The seed of each episode in the dataset. */
  seeds: number[];
  /** Episodes that were already there (resume). */
  kept: number;
  /** What a resume removed: the killed writer's temporary files and unfinished episode. */
  removed: string[];
}

/**
 * The writer for a recording: a new dataset, or with `resume` the one `out` holds, with the seeds of its
 * complete episodes.
 */
async function openRecording(
  opts: RecordOptions,
  settings: CreateOptions,
): Promise<{ writer: DatasetWriter; seeds: number[]; removed: string[] }> {
  if (!opts.resume) {
    if (existsSync(opts.out) && readdirSync(opts.out).length > 0) {
      throw new UserError(
        `${opts.out}: already exists and is not empty: choose a new folder, or pass --resume to go on with the recording in it`,
      );
    }
    return { writer: await createDataset(opts.out, settings), seeds: [], removed: [] };
  }
  const resumed = await resumeDataset(opts.out, settings);
  const seeds = resumed.kept.map((e, i) => {
    if (e.seed === null) {
      throw new UserError(
        `${opts.out}: episode ${i}: its metadata keeps no seed (recorded by an older vla, or not by vla sim record): cannot tell which seeds come next`,
      );
    }
    return e.seed;
  });
  // Seeds are tried in order from the first: any other sequence was not this recording's.
  for (const [i, seed] of seeds.entries()) {
    const floor = i === 0 ? opts.seed : seeds[i - 1]! + 1;
    if (seed < floor) {
      throw new UserError(
        `${opts.out}: episode ${i}: seed: expected ${floor} or more (seeds rise from --seed ${opts.seed}), got ${seed}`,
      );
    }
  }
  return { writer: resumed.writer, seeds, removed: resumed.removed };
}

export async function recordDataset(opts: RecordOptions): Promise<RecordReport> {
  const { task, expert } = getTask(opts.task);
  const plan = opts.plan ?? expert;
  const spec = loadRobot(task.robot.name);
  const cameras = specCameraNames(spec).filter((c) => c in task.robot.cameras);
  const width = opts.width ?? 224;
  const height = opts.height ?? 224;
  const settings: CreateOptions = {
    fps: task.robot.controlHz,
    robotType: task.robot.name,
    format: opts.format,
    extraInfo: {
      // Which scene (cameras, objects) the frames come from; checked again at training and evaluation.
      simulation: simProvenance(task),
      // What decides the episodes beyond the scene: a resume checks them against its own.
      recording: { seed: opts.seed, ...(opts.actionNoise ? { action_noise: opts.actionNoise } : {}) },
    },
    features: {
      state: { names: spec.state.names },
      action: { names: spec.action.names },
      cameras: cameras.map((name) => ({ name, height, width })),
    },
  };
  // The writer first: it refuses a folder it cannot write before any simulation starts.
  const { writer, seeds, removed } = await openRecording(opts, settings);
  const kept = seeds.length;
  if (kept > opts.episodes) {
    throw new UserError(
      `--episodes ${opts.episodes}: expected ${kept} or more, as ${opts.out} already holds ${kept}`,
    );
  }
  // Attempt k uses seed + k: the next one follows the last kept episode's, and those between failed.
  const next = kept === 0 ? 0 : seeds[kept - 1]! - opts.seed + 1;
  const report: RecordReport = {
    dir: writer.dir,
    saved: kept,
    failed: next - kept,
    frames: 0,
    seeds: [...seeds],
    kept,
    removed,
  };
  if (kept === opts.episodes) {
    // Nothing left to record; finishing writes the metadata whole and drops the scratch folder.
    await writer.finalize();
    return report;
  }
  const env = await SimEnv.create(task, { cameras, width, height });
  const scripted = await WaypointExpert.create(env, plan);
  const perturbed = opts.actionNoise ? new PerturbedExpert(scripted, opts.actionNoise) : null;
  const agent: Agent = perturbed ?? scripted;
  const maxFailures = opts.maxFailures ?? opts.episodes + 5;
  try {
    for (let attempt = next; report.saved < opts.episodes; attempt++) {
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
        await writer.saveEpisode({ seed });
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
