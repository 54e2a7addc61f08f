import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import type { LeRobotDataset } from '../data/reader.js';
import type { VideoCodec } from '../data/video.js';
import type { WriteFormat } from '../data/writer.js';
import { niceTicks, PALETTE, type Prim } from '../plot/plot.js';
import { registerDataEdit } from './data-edit.js';
import { collect, table } from './output.js';

function writeFileAtomic(file: string, data: Uint8Array): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

const codecOf = (v: string): VideoCodec => {
  if (v !== 'h264' && v !== 'av1')
    throw new UserError(`--codec: expected h264 or av1, got ${JSON.stringify(v)}`);
  return v;
};

const formatOf = (v: string): WriteFormat => {
  if (v !== 'v2.1' && v !== 'v3.0')
    throw new UserError(`--format: expected v2.1 or v3.0, got ${JSON.stringify(v)}`);
  return v;
};

function printInfo(ds: LeRobotDataset): void {
  const i = ds.info;
  const lengths = ds.episodes.map((e) => e.length);
  console.log(
    table(
      ['field', 'value'],
      [
        ['path', ds.dir],
        ['version', i.codebaseVersion],
        ['robot', i.robotType ?? '(none)'],
        ['fps', String(i.fps)],
        ['episodes', String(ds.episodes.length)],
        ['frames', String(ds.numFrames)],
        [
          'episode length',
          lengths.length > 0 ? `${Math.min(...lengths)}..${Math.max(...lengths)} frames` : '-',
        ],
        ['duration', `${(ds.numFrames / i.fps).toFixed(1)} s`],
        ['tasks', String(ds.tasks.size)],
      ],
    ),
  );
  console.log('');
  console.log(
    table(
      ['feature', 'dtype', 'shape', 'names'],
      Object.values(i.features).map((f) => {
        const names = f.names ? f.names.join(', ') : '';
        return [
          f.key,
          f.dtype,
          `[${f.shape.join(', ')}]`,
          names.length > 60 ? `${names.slice(0, 57)}...` : names,
        ];
      }),
    ),
  );
  console.log('');
  console.log(
    table(
      ['task_index', 'task'],
      [...ds.tasks.entries()].map(([k, t]) => [String(k), t]),
    ),
  );
  for (const w of ds.warnings) console.log(`warning: ${w}`);
}

/** One panel per dim: the state (blue) and the action (orange) over the episode, time in seconds. */
function curvesFigure(
  title: string,
  names: string[],
  series: Array<{ rows: Float32Array | null; dim: number }>,
  length: number,
  fps: number,
): { width: number; height: number; prims: Prim[] } {
  const cols = 2;
  const pw = 380;
  const ph = 120;
  const left = 56;
  const top = 44;
  const gapY = 34;
  const panels = names.length;
  const width = cols * (pw + left) + 20;
  const height = top + Math.ceil(panels / cols) * (ph + gapY);
  const prims: Prim[] = [{ kind: 'rect', x: 0, y: 0, w: width, h: height, fill: '#ffffff' }];
  const text = (
    x: number,
    y: number,
    t: string,
    anchor: 'start' | 'middle' | 'end' = 'start',
    color = '#222222',
  ) => prims.push({ kind: 'text', x, y, text: t, size: 7, anchor, color });
  text(width / 2, 16, title, 'middle');
  text(left, 32, 'state', 'start', PALETTE[0]);
  text(left + 60, 32, 'action', 'start', PALETTE[1]);
  for (let k = 0; k < panels; k++) {
    const x0 = left + (k % cols) * (pw + left);
    const y0 = top + Math.floor(k / cols) * (ph + gapY) + 12;
    const values: number[] = [];
    for (const s of series)
      if (s.rows && k < s.dim) for (let t = 0; t < length; t++) values.push(s.rows[t * s.dim + k]!);
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (!(hi > lo)) {
      lo -= 1;
      hi += 1;
    }
    const px = (t: number) => x0 + (t / Math.max(1, length - 1)) * pw;
    const py = (v: number) => y0 + ph - ((v - lo) / (hi - lo)) * ph;
    prims.push({ kind: 'rect', x: x0, y: y0, w: pw, h: 1, fill: '#dddddd' });
    prims.push({ kind: 'rect', x: x0, y: y0 + ph, w: pw, h: 1, fill: '#888888' });
    for (const v of niceTicks(lo, hi, 3)) {
      prims.push({ kind: 'rect', x: x0, y: py(v), w: pw, h: 1, fill: '#eeeeee' });
      text(x0 - 4, py(v) + 3, Number(v.toPrecision(4)).toString(), 'end', '#666666');
    }
    text(x0, y0 - 4, names[k]!);
    text(x0 + pw, y0 + ph + 12, `${((length - 1) / fps).toFixed(1)} s`, 'end', '#666666');
    for (const [si, s] of series.entries()) {
      if (!s.rows || k >= s.dim) continue;
      const points: Array<[number, number]> = [];
      for (let t = 0; t < length; t++) points.push([px(t), py(s.rows[t * s.dim + k]!)]);
      prims.push({ kind: 'line', points, color: PALETTE[si]!, width: 1.5, opacity: 1 });
    }
  }
  return { width, height, prims };
}

/** A one-line progress bar on a terminal; silent when stderr is a file or pipe. */
function progressBar(label: string): (done: number, total: number) => void {
  let last = -1;
  return (done, total) => {
    if (!process.stderr.isTTY) return;
    const pct = Math.floor((100 * done) / Math.max(1, total));
    if (pct === last && done !== total) return;
    last = pct;
    const width = 30;
    const filled = Math.round((width * done) / Math.max(1, total));
    process.stderr.write(
      `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${done === total ? '\n' : ''}`,
    );
  };
}

const positiveInt = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new UserError(`${flag}: expected a positive integer, got ${JSON.stringify(v)}`);
  return n;
};

export function register(program: Command): void {
  const cmd = program
    .command('data')
    .description('LeRobot datasets: info, show, validate, import, convert, merge, split, filter, norm stats');

  cmd
    .command('validate')
    .description(
      'check a dataset against the invariants LeRobot datasets hold; exits non-zero on any violation',
    )
    .argument('<path>', 'dataset folder')
    .action(async (dir: string) => {
      const { validateDataset } = await import('../data/validate.js');
      const report = await validateDataset(dir);
      console.log(
        `${report.dir}: ${report.version}, ${report.episodes} episodes, ${report.frames} frames, ${report.videos} episode videos checked`,
      );
      for (const w of report.warnings) console.log(`  warning: ${w}`);
      if (report.problems.length === 0) {
        console.log('ok: every invariant holds');
        return;
      }
      for (const p of report.problems) console.log(`  problem: ${p}`);
      throw new UserError(
        `${dir}: ${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} found`,
      );
    });

  cmd
    .command('info')
    .description('summarize a dataset: version, robot, fps, episodes, frames, features with shapes, tasks')
    .argument('<path>', 'dataset folder')
    .action(async (dir: string) => {
      const { openDataset } = await import('../data/reader.js');
      printInfo(await openDataset(dir));
    });

  cmd
    .command('show')
    .description(
      'write a PNG contact sheet of camera frames and a PNG plot of state/action curves for one episode',
    )
    .argument('<path>', 'dataset folder')
    .option('--episode <n>', 'episode index', (v) => Number(v), 0)
    .option('--frames <n>', 'frames per camera on the contact sheet', positiveInt('--frames'), 8)
    .option('--out <dir>', 'where the PNGs go', '.')
    .action(async (dir: string, opts: { episode: number; frames: number; out: string }) => {
      const { openDataset } = await import('../data/reader.js');
      const { contactSheet } = await import('../data/show.js');
      const { renderPng } = await import('../plot/render-png.js');
      if (!Number.isInteger(opts.episode))
        throw new UserError(`--episode: expected an integer, got ${opts.episode}`);
      const ds = await openDataset(dir);
      const ep = ds.episode(opts.episode);
      const base = path.join(opts.out, `episode_${String(ep.index).padStart(6, '0')}`);
      if (ds.cameras.length > 0) {
        const sheet = await contactSheet(ds, ep.index, { count: opts.frames });
        writeFileAtomic(`${base}_frames.png`, sheet.png);
        console.log(
          `${base}_frames.png: ${sheet.cameras.join(', ')} (rows) at frames ${sheet.frames.join(', ')}`,
        );
      }
      const d = await ds.readEpisode(ep.index);
      const stateNames = ds.info.features['observation.state']?.names ?? [];
      const actionNames = ds.info.features.action?.names ?? [];
      const dims = Math.max(d.stateDim, d.actionDim);
      const names = Array.from({ length: dims }, (_, k) => {
        const s = stateNames[k] ?? `state ${k}`;
        const a = actionNames[k] ?? `action ${k}`;
        return s === a ? s : `${s} / ${a}`;
      });
      const fig = curvesFigure(
        `${path.basename(ds.dir)} episode ${ep.index}: ${ep.tasks.join('; ')}`,
        names,
        [
          { rows: d.state, dim: d.stateDim },
          { rows: d.action, dim: d.actionDim },
        ],
        d.length,
        ds.info.fps,
      );
      writeFileAtomic(`${base}_curves.png`, renderPng(fig));
      console.log(`${base}_curves.png: ${dims} dims over ${d.length} frames`);
    });

  cmd
    .command('import')
    .description("import ALOHA HDF5 episodes (ALOHA's recorder layout) into a new LeRobot dataset")
    .argument('<inputs...>', 'episode .hdf5 files or folders of them')
    .requiredOption('--out <dir>', 'the new dataset folder')
    .requiredOption('--task <text>', 'the task (prompt) of every episode')
    .option('--format <v>', 'v2.1 (openpi) or v3.0', formatOf, 'v2.1' as WriteFormat)
    .option('--fps <n>', 'recording rate', (v) => Number(v), 50)
    .option('--images', 'store frames as PNG in parquet instead of mp4')
    .option(
      '--codec <c>',
      'video codec: h264 or av1 (SVT-AV1, frames >= 64 px)',
      codecOf,
      'h264' as VideoCodec,
    )
    .action(
      async (
        inputs: string[],
        opts: {
          out: string;
          task: string;
          format: WriteFormat;
          fps: number;
          images?: boolean;
          codec: VideoCodec;
        },
      ) => {
        const { importAloha } = await import('../data/hdf5.js');
        const r = await importAloha(inputs, opts.out, {
          format: opts.format,
          task: opts.task,
          fps: opts.fps,
          video: !opts.images,
          codec: opts.codec,
          onEpisode: (done, total, file) => console.error(`imported ${done}/${total}: ${file}`),
        });
        console.log(`${opts.out}: ${opts.format}, ${r.episodes} episodes, ${r.frames} frames`);
      },
    );

  cmd
    .command('convert')
    .description('copy a dataset into another LeRobot version (v2.x <-> v3.0)')
    .argument('<src>', 'dataset folder to read')
    .argument('<dst>', 'new dataset folder')
    .requiredOption('--format <v>', 'v2.1 or v3.0', formatOf)
    .option(
      '--codec <c>',
      'video codec of the copy: h264 or av1 (SVT-AV1, frames >= 64 px)',
      codecOf,
      'h264' as VideoCodec,
    )
    .action(async (src: string, dst: string, opts: { format: WriteFormat; codec: VideoCodec }) => {
      const { convertDataset } = await import('../data/convert.js');
      const { validateDataset } = await import('../data/validate.js');
      await convertDataset(src, dst, opts.format, progressBar('convert'), opts.codec);
      const report = await validateDataset(dst);
      console.log(`${dst}: ${opts.format}, ${report.episodes} episodes, ${report.frames} frames`);
      if (report.problems.length > 0)
        throw new UserError(`${dst}: converted, but: ${report.problems.join('; ')}`);
    });

  cmd
    .command('stats')
    .description(
      "compute openpi norm stats (mean, std, q01, q99 of state and actions after the config's transforms)",
    )
    .argument('<config>', 'config name or path')
    .option('--set <key=value>', 'override a config field (repeatable)', collect, [])
    .option('--max-frames <n>', 'use at most N frames, evenly spaced', positiveInt('--max-frames'))
    .action(async (name: string, opts: { set: string[]; maxFrames?: number }) => {
      const { resolveConfig } = await import('../config/load.js');
      const { computeRobotNormStats } = await import('../data/normstats.js');
      const { writeNormStats } = await import('../transforms/normalize.js');
      const { config } = resolveConfig(name, opts.set);
      const { robotConfig, robotsOf } = await import('../config/mixture.js');
      // A robot whose stats come from an assets_dir (its base's) keeps them; the others get theirs.
      const names = robotsOf(config);
      const kept = names.flatMap((robot) => {
        const dir = robotConfig(config, robot).data.assets_dir;
        return dir ? [`${robot} from ${dir}`] : [];
      });
      if (kept.length === names.length) {
        const where =
          names.length === 1
            ? `data.assets_dir ${config.data.assets_dir}`
            : `each robot's assets_dir (${kept.join('; ')})`;
        throw new UserError(
          `${config.name} normalizes with the norm stats in ${where} (its base's): stats of its data would not be used; nothing to compute (set data.assets_dir=null to compute the data's own)`,
        );
      }
      if (kept.length > 0) console.log(`kept as they are (assets_dir): ${kept.join('; ')}`);
      const started = Date.now();
      // One file per robot (a mixture of robots keeps each robot's stats apart, as openpi per asset).
      const bar = progressBar('stats');
      const robots = await computeRobotNormStats(config, {
        maxFrames: opts.maxFrames,
        onProgress: (_robot, done, total) => bar(done, total),
      });
      for (const { file, result } of robots) {
        writeNormStats(file, result.stats);
        console.log(
          `${path.relative(process.cwd(), file)}: ${result.frames} frames, ${result.actionRows} action rows (horizon ${result.actionRows / Math.max(1, result.frames)}), ${((Date.now() - started) / 1000).toFixed(1)} s`,
        );
      }
    });

  cmd
    .command('tokenizer')
    .description(
      "train π0-FAST's action tokenizer (DCT, then BPE) on the config's action chunks, beside its norm stats",
    )
    .argument('<config>', 'config name or path (model.variant pi0_fast)')
    .option('--set <key=value>', 'override a config field (repeatable)', collect, [])
    .action(async (name: string, opts: { set: string[] }) => {
      const { resolveConfig } = await import('../config/load.js');
      const { findNormStatsFile } = await import('../train/run.js');
      const { actionTokenizerFile, trainActionTokenizer } = await import('../data/action-tokenizer.js');
      const { writeFastTokenizer } = await import('../model/fast-tokenizer.js');
      const { readNormStats } = await import('../transforms/normalize.js');
      const { config } = resolveConfig(name, opts.set);
      const started = Date.now();
      const statsFile = findNormStatsFile(config);
      const bar = progressBar('chunks');
      const bpe = progressBar('bpe');
      const tok = await trainActionTokenizer(config, readNormStats(statsFile), {
        onProgress: (stage, done, total) => (stage === 'chunks' ? bar : bpe)(done, total),
      });
      const file = actionTokenizerFile(statsFile);
      writeFastTokenizer(file, tok);
      const r = tok.spec.report!;
      console.log(
        `${path.relative(process.cwd(), file)}: ${tok.vocabSize} tokens (scale ${tok.spec.scale}) from ${r.chunks} chunks of ${tok.spec.horizon}×${tok.spec.actionDim}; tokens per chunk p50 ${r.tokensPerChunk.p50}, mean ${r.tokensPerChunk.mean.toFixed(1)}, max ${r.tokensPerChunk.max} (model.fast.max_tokens ${config.model.fast.max_tokens}); round-trip max error ${(100 * r.maxErrorOfRange).toFixed(2)}% of a dim's range; ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
      if (r.tokensPerChunk.max > config.model.fast.max_tokens)
        console.log(
          `warning: some chunks take more than model.fast.max_tokens ${config.model.fast.max_tokens} tokens: training cuts them and decoding them fails; raise max_tokens or lower fast.scale`,
        );
    });

  registerDataEdit(cmd);
}
