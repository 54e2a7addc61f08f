/**
 * Evaluations as `vla sim eval` leaves them: a folder with eval_info.json (LeRobot's names: per task
 * `aggregated` and `per_episode`) and videos/ with the rollouts' mp4s. Found under the folders the
 * dashboard was given; each is named by its path inside them.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { describeValue, UserError } from '../config/errors.js';
import { validate } from '../config/load.js';
import { type Folders, shownPath } from './folders.js';
import { HttpError } from './http.js';

export const EVAL_INFO = 'eval_info.json';

const Aggregated = z.looseObject({
  task: z.string().optional(),
  episodes: z.number(),
  failed: z.number().optional(),
  pc_success: z.number(),
  avg_sum_reward: z.number(),
  avg_max_reward: z.number(),
  eval_s: z.number().optional(),
});

const Episode = z.looseObject({
  episode_ix: z.number(),
  seed: z.number().optional(),
  prompt: z.string().optional(),
  sum_reward: z.number(),
  max_reward: z.number(),
  success: z.boolean(),
  success_step: z.number().nullable().optional(),
  steps: z.number().optional(),
  error: z.string().optional(),
});

const EvalInfo = z.looseObject({
  per_task: z.array(
    z.looseObject({
      task: z.string(),
      aggregated: Aggregated,
      per_episode: z.array(Episode),
      videos: z.array(z.string()).optional(),
    }),
  ),
  overall: z.looseObject({
    episodes: z.number(),
    pc_success: z.number(),
    avg_sum_reward: z.number(),
    avg_max_reward: z.number(),
  }),
  checkpoint: z.string().optional(),
  noise_scale: z.number().optional(),
  max_steps: z.number().optional(),
  warnings: z.array(z.string()).optional(),
});
type EvalInfo = z.infer<typeof EvalInfo>;

export interface EvalSummary {
  id: string;
  /** The folder, relative to the workspace where it lies inside it. */
  dir: string;
  modified: number;
  error: string | null;
  overall: EvalInfo['overall'] | null;
  tasks: Array<z.infer<typeof Aggregated> & { task: string }>;
  checkpoint: string | null;
  videos: number;
}

export interface EvalVideo {
  task: string | null;
  /** The file's name inside the evaluation's videos/ folder. */
  file: string;
  /** The request path that plays it. */
  id: string;
}

export interface EvalDetail extends EvalSummary {
  info: EvalInfo | null;
  videoFiles: EvalVideo[];
  /** Videos eval_info.json lists that are not in videos/. */
  missingVideos: string[];
}

/** How deep under a given folder evaluations are looked for (outputs/<name>/eval_info.json is 1). */
const MAX_DEPTH = 4;
const SKIP = new Set(['node_modules', 'videos']);

function findEvalDirs(dir: string, depth: number, out: string[]): void {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  if (entries.some((e) => e.isFile() && e.name === EVAL_INFO)) out.push(dir);
  if (depth >= MAX_DEPTH) return;
  for (const e of entries) {
    if (e.isDirectory() && !e.name.startsWith('.') && !SKIP.has(e.name)) {
      findEvalDirs(path.join(dir, e.name), depth + 1, out);
    }
  }
}

export class EvalsView {
  constructor(
    private readonly folders: Folders,
    private readonly workspace: string,
  ) {}

  private rel(p: string): string {
    return shownPath(this.workspace, p);
  }

  private read(dir: string): { info: EvalInfo | null; error: string | null; modified: number } {
    const file = path.join(dir, EVAL_INFO);
    let modified = 0;
    try {
      modified = statSync(file).mtimeMs;
      const text = readFileSync(file, 'utf8');
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch {
        throw new UserError(`expected JSON, got ${describeValue(text.slice(0, 40))}`);
      }
      return { info: validate(EvalInfo, raw, () => ''), error: null, modified };
    } catch (e) {
      const why =
        (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'the file is missing' : (e as Error).message;
      return { info: null, error: `${this.rel(file)}: ${why}`, modified };
    }
  }

  private summarize(id: string, dir: string): EvalSummary & { info: EvalInfo | null } {
    const { info, error, modified } = this.read(dir);
    return {
      id,
      dir: this.rel(dir),
      modified,
      error,
      info,
      overall: info?.overall ?? null,
      tasks: info?.per_task.map((t) => ({ ...t.aggregated, task: t.task })) ?? [],
      checkpoint: info?.checkpoint ?? null,
      videos: info?.per_task.reduce((n, t) => n + (t.videos?.length ?? 0), 0) ?? 0,
    };
  }

  list(): EvalSummary[] {
    const out: EvalSummary[] = [];
    for (const folder of this.folders.list()) {
      const dirs: string[] = [];
      findEvalDirs(folder.dir, 0, dirs);
      for (const dir of dirs) {
        const { info: _info, ...summary } = this.summarize(this.folders.idOf(dir)!, dir);
        out.push(summary);
      }
    }
    return out.sort((a, b) => b.modified - a.modified);
  }

  detail(id: string): EvalDetail {
    const { file: dir, id: name } = this.folders.resolve(id, 'eval');
    if (!existsSync(path.join(dir, EVAL_INFO))) {
      throw new HttpError(404, `eval ${name}: no ${EVAL_INFO} in ${this.rel(dir)}`);
    }
    const summary = this.summarize(name, dir);
    const videoDir = path.join(dir, 'videos');
    const present = existsSync(videoDir)
      ? readdirSync(videoDir)
          .filter((f) => f.endsWith('.mp4'))
          .sort()
      : [];
    const listed = new Map<string, string>();
    for (const t of summary.info?.per_task ?? [])
      for (const v of t.videos ?? []) listed.set(path.basename(v), t.task);
    return {
      ...summary,
      videoFiles: present.map((f) => ({ task: listed.get(f) ?? null, file: f, id: `${name}/videos/${f}` })),
      missingVideos: [...listed.keys()]
        .filter((f) => !present.includes(f))
        .map((f) => `${f} (listed in ${EVAL_INFO}, not in ${this.rel(videoDir)})`),
    };
  }

  /** The mp4 a request names: inside a given folder, and a video. */
  video(requested: string): string {
    const { file, id } = this.folders.resolve(requested, 'video');
    if (path.extname(file) !== '.mp4') {
      throw new HttpError(400, `video: expected an .mp4 file, got ${JSON.stringify(id)}`);
    }
    return file;
  }
}
