/**
 * `--policy replay:DATASET[#EPISODE]`: answers with the recorded actions of a dataset, chunk after
 * chunk, as GR00T's replay server does: a tool for checking a robot's wiring and an environment's
 * determinism against known-good actions. Each connection starts at the given episode (or the first)
 * and moves on to the next episode when it reaches the end of one, so a client that executes whole
 * chunks for the recorded episode length stays aligned with the recording.
 */
import { UserError } from '../config/errors.js';
import type { RobotSpec } from '../config/robot.js';
import { openDataset } from '../data/reader.js';
import type { Policy, PolicyContext, PolicyRequest, PolicyResult } from './policy.js';

interface Cursor {
  episode: number;
  step: number;
}

export class ReplayPolicy implements Policy {
  readonly requiresPrompt = false;
  private readonly cursors = new Map<number, Cursor>();

  private constructor(
    readonly robot: RobotSpec,
    readonly horizon: number,
    readonly metadata: Record<string, unknown>,
    /** Recorded actions of each episode, in episode order: [length, actionDim]. */
    private readonly episodes: Float32Array[],
    private readonly first: number,
  ) {}

  static async open(
    robot: RobotSpec,
    dir: string,
    episode: number | null,
    ctx: PolicyContext,
  ): Promise<ReplayPolicy> {
    const ds = await openDataset(dir);
    const dim = robot.action.names.length;
    const episodes: Float32Array[] = [];
    for (const ep of ds.episodes) {
      const data = await ds.readEpisode(ep.index);
      if (!data.action) throw new UserError(`replay:${dir}: the dataset has no "action" feature`);
      if (data.actionDim !== dim) {
        throw new UserError(
          `replay:${dir}: expected actions of ${dim} dims for robot ${robot.name}, the dataset has ${data.actionDim}`,
        );
      }
      episodes.push(data.action);
    }
    if (episodes.length === 0) throw new UserError(`replay:${dir}: the dataset has no episodes`);
    const first = episode === null ? 0 : ds.episodes.findIndex((e) => e.index === episode);
    if (first < 0) ds.episode(episode!); // throws the reader's clear "no episode N" error
    return new ReplayPolicy(
      robot,
      ctx.horizon,
      { ...ctx.metadata, replay: { dataset: dir } },
      episodes,
      first,
    );
  }

  async inferBatch(requests: PolicyRequest[]): Promise<PolicyResult[]> {
    const dim = this.robot.action.names.length;
    return requests.map(({ session }) => {
      const cursor = this.cursors.get(session) ?? { episode: this.first, step: 0 };
      const actions = this.episodes[cursor.episode % this.episodes.length]!;
      const length = actions.length / dim;
      const chunk = new Float32Array(this.horizon * dim);
      for (let h = 0; h < this.horizon; h++) {
        // Past the episode's end the robot holds its last recorded command, as LeRobot pads chunks.
        const row = Math.min(cursor.step + h, length - 1);
        chunk.set(actions.subarray(row * dim, (row + 1) * dim), h * dim);
      }
      cursor.step += this.horizon;
      if (cursor.step >= length) {
        cursor.episode++;
        cursor.step = 0;
      }
      this.cursors.set(session, cursor);
      return { actions: chunk, horizon: this.horizon, actionDim: dim, inferMs: 0 };
    });
  }

  endSession(session: number): void {
    this.cursors.delete(session);
  }
}
