import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import type { TaskSummary } from '../sim/rollout.js';
import { HELD_OUT_TASKS, TASK_NAMES } from '../sim/tasks/names.js';
import { samplerChoiceFromEnv } from './context.js';
import { intOption, NOISE_SCALE_HELP, noiseScaleOption, numberOption, progressBar, table } from './output.js';
import { registerSweep } from './sim-sweep.js';

/** One task's part of eval_info.json, named as LeRobot's eval names them. */
interface TaskInfo {
  task: string;
  aggregated: TaskSummary & { eval_s: number; eval_ep_s: number };
  per_episode: Array<Record<string, unknown>>;
  videos: string[];
}

function parseSize(text: string): [number, number] {
  const m = /^(\d+)x(\d+)$/.exec(text);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) {
    throw new UserError(`--size ${text}: expected WIDTHxHEIGHT such as 640x480`);
  }
  return [Number(m[1]), Number(m[2])];
}

function writeJson(file: string, data: unknown): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(data, null, 2)}\n`);
  renameSync(tmp, file);
}

export function register(program: Command): void {
  const sim = program
    .command('sim')
    .description('MuJoCo simulation: tasks, scripted experts, recording, rollouts');

  sim
    .command('tasks')
    .description('list the simulated tasks')
    .action(async () => {
      const { TASKS } = await import('../sim/tasks/index.js');
      console.log(
        table(
          ['task', 'robot', 'steps', 'rate', 'base data', 'description'],
          Object.values(TASKS).map(({ task }) => [
            task.name,
            task.robot.name,
            String(task.episodeSteps),
            `${task.robot.controlHz} Hz`,
            (HELD_OUT_TASKS as readonly string[]).includes(task.name) ? 'held out' : 'train',
            task.description,
          ]),
        ),
      );
    });

  sim
    .command('play')
    .description('run the scripted expert on a task and write a video of it')
    .requiredOption('--task <name>', `task: ${TASK_NAMES.join(', ')}`)
    .option('--policy <name>', 'who drives: expert (policy servers: vla sim eval --url)', 'expert')
    .option('--seed <n>', 'seed of the first episode', '0')
    .option('--episodes <n>', 'episodes to run', '1')
    .option('--camera <name>', "camera to film (default: the robot's first)")
    .option('--size <WxH>', 'video size', '640x480')
    .option('--out <dir>', 'where the MP4s go', 'outputs/sim_play')
    .action(
      async (opts: {
        task: string;
        policy: string;
        seed: string;
        episodes: string;
        camera?: string;
        size: string;
        out: string;
      }) => {
        const { VideoEncoder } = await import('../data/video.js');
        const { SimEnv } = await import('../sim/env.js');
        const { WaypointExpert } = await import('../sim/expert.js');
        const { runEpisode } = await import('../sim/rollout.js');
        const { getTask } = await import('../sim/tasks/index.js');
        const { task, expert: plan } = getTask(opts.task);
        if (opts.policy !== 'expert') {
          throw new UserError(
            `--policy ${opts.policy}: expected expert (evaluate a policy server with vla sim eval --url)`,
          );
        }
        const [width, height] = parseSize(opts.size);
        const camera = opts.camera ?? Object.keys(task.robot.cameras)[0]!;
        const env = await SimEnv.create(task, { width, height, cameras: [] });
        if (!(camera in task.robot.cameras)) {
          throw new UserError(
            `--camera ${camera}: ${task.robot.name} has ${Object.keys(task.robot.cameras).join(', ')}`,
          );
        }
        const expert = await WaypointExpert.create(env, plan);
        mkdirSync(opts.out, { recursive: true });
        const seed0 = intOption('seed', opts.seed, 0)!;
        const rows: string[][] = [];
        try {
          for (let i = 0; i < intOption('episodes', opts.episodes, 1)!; i++) {
            const seed = seed0 + i;
            const file = path.join(opts.out, `${task.name}_seed${seed}.mp4`);
            const video = new VideoEncoder(file, { width, height, fps: task.robot.controlHz });
            const t0 = performance.now();
            const r = await runEpisode(env, expert, i, seed, {
              onStep: async (_obs, _action, _reward, e) => {
                video.write(e.render(camera));
                await video.drain();
              },
            });
            await video.close();
            rows.push([
              String(seed),
              r.success ? 'yes' : 'no',
              r.successStep === null ? '-' : String(r.successStep),
              r.sumReward.toFixed(0),
              r.maxReward.toFixed(0),
              `${((performance.now() - t0) / 1000).toFixed(1)} s`,
              file,
            ]);
            console.error(`${task.name} seed ${seed}: "${r.prompt}" -> ${r.success ? 'success' : 'failure'}`);
          }
        } finally {
          expert.close();
          env.free();
        }
        console.log(table(['seed', 'success', 'at step', 'sum reward', 'max reward', 'time', 'video'], rows));
      },
    );

  sim
    .command('frame')
    .description("render one camera of a task's starting scene to a PNG")
    .requiredOption('--task <name>', `task: ${TASK_NAMES.join(', ')}`)
    .requiredOption('--out <file.png>', 'PNG to write')
    .option('--seed <n>', 'seed', '0')
    .option('--camera <name>', "camera (default: the robot's first)")
    .option('--size <WxH>', 'image size', '640x480')
    .action(async (opts: { task: string; out: string; seed: string; camera?: string; size: string }) => {
      const { SimEnv } = await import('../sim/env.js');
      const { writePng } = await import('../sim/png.js');
      const { getTask } = await import('../sim/tasks/index.js');
      const { task } = getTask(opts.task);
      const [width, height] = parseSize(opts.size);
      const camera = opts.camera ?? Object.keys(task.robot.cameras)[0]!;
      const env = await SimEnv.create(task, { width, height, cameras: [camera] });
      try {
        const obs = env.reset(intOption('seed', opts.seed, 0)!);
        writePng(opts.out, obs.images[camera]!, width, height);
        console.log(
          `${opts.out}: ${task.name} seed ${opts.seed}, ${camera}, ${width}x${height}, "${obs.prompt}"`,
        );
      } finally {
        env.free();
      }
    });

  sim
    .command('record')
    .description('record scripted-expert demonstrations as a LeRobot dataset (failed episodes are skipped)')
    .requiredOption('--task <name>', `task: ${TASK_NAMES.join(', ')}`)
    .requiredOption('--episodes <n>', 'successful episodes to save')
    .requiredOption(
      '--out <dir>',
      'dataset folder (new or empty, or with --resume one a killed recording left)',
    )
    .option(
      '--resume',
      'go on with the recording in --out (same arguments): its complete episodes stay, the rest are recorded with the seeds an uninterrupted run would have used',
    )
    .option('--format <v>', 'LeRobot format: v2.1 or v3.0', 'v2.1')
    .option('--seed <n>', 'seed of the first episode', '0')
    .option('--size <WxH>', 'camera frame size', '224x224')
    .option(
      '--action-noise <std>',
      'DART: execute the expert with a drifting offset of this standard deviation on each arm joint (radians) and record its clean actions, so the data shows recoveries',
    )
    .option(
      '--noise-tau <steps>',
      'correlation time of the --action-noise offset, in control steps (default: 10)',
    )
    .action(
      async (opts: {
        task: string;
        episodes: string;
        out: string;
        format: string;
        seed: string;
        size: string;
        actionNoise?: string;
        noiseTau?: string;
        resume?: boolean;
      }) => {
        const { getTask } = await import('../sim/tasks/index.js');
        getTask(opts.task);
        if (opts.noiseTau !== undefined && opts.actionNoise === undefined) {
          throw new UserError(
            `--noise-tau ${opts.noiseTau}: it shapes the --action-noise offset; give --action-noise <std> too`,
          );
        }
        if (opts.format !== 'v2.1' && opts.format !== 'v3.0') {
          throw new UserError(`--format ${opts.format}: expected v2.1 or v3.0`);
        }
        const episodes = intOption('episodes', opts.episodes, 1)!;
        const bar = progressBar('recording', episodes);
        const t0 = performance.now();
        // Loaded on use: the dataset writer, policy client and server are heavy imports other commands skip.
        const { recordDataset } = await import('../sim/record.js');
        const report = await recordDataset({
          task: opts.task,
          episodes,
          out: opts.out,
          resume: opts.resume === true,
          format: opts.format,
          seed: intOption('seed', opts.seed, 0)!,
          width: parseSize(opts.size)[0],
          height: parseSize(opts.size)[1],
          actionNoise:
            opts.actionNoise === undefined
              ? undefined
              : {
                  std: numberOption('action-noise', opts.actionNoise, 0)!,
                  tau: numberOption('noise-tau', opts.noiseTau, 1) ?? 10,
                },
          onEpisode: (saved, failed) => bar(saved, failed > 0 ? `(${failed} failed, skipped)` : ''),
        });
        const plural = (n: number) => `${n} episode${n === 1 ? '' : 's'}`;
        if (report.removed.length > 0) {
          console.error(
            `removed what the interrupted recording left unfinished: ${report.removed.join(', ')}`,
          );
        }
        if (report.kept === episodes) {
          console.log(
            `${report.dir} already holds ${plural(report.kept)} of ${opts.task}, as asked: nothing to record`,
          );
          return;
        }
        const kept = opts.resume ? `kept ${plural(report.kept)} recorded before, ` : '';
        console.log(
          `${kept}recorded ${plural(report.saved - report.kept)} (${report.frames} frames) of ${opts.task} to ${report.dir} in ` +
            `${((performance.now() - t0) / 1000).toFixed(1)} s; ${report.failed} failed expert episodes skipped`,
        );
      },
    );

  sim
    .command('eval')
    .description(
      'evaluate a policy on tasks as a robot client; reports pc_success, avg_sum_reward, avg_max_reward per task',
    )
    .requiredOption('--task <names>', `task, or several separated by commas: ${TASK_NAMES.join(', ')}`)
    .option('--url <ws://host:port>', 'a running policy server (vla serve, or openpi)')
    .option('--checkpoint <dir>', 'serve this checkpoint locally and evaluate it')
    .option('--noise-scale <s>', `with --checkpoint: ${NOISE_SCALE_HELP}`)
    .option('--api-key <key>', 'sent as "Authorization: Api-Key <key>" (env VLA_API_KEY)')
    .option('--episodes <n>', 'episodes per task', '10')
    .option('--workers <n>', 'episodes run in parallel worker threads', '1')
    .option(
      '--seed <n>',
      'seed of episode 0 (episode i uses seed + i); far from recording seeds, so eval scenes are unseen',
      '100000',
    )
    .option('--replan-every <n>', 'ask for a new chunk after this many steps (default: the whole chunk)')
    .option(
      '--temporal-ensemble <coeff>',
      "ACT's temporal ensembling: a chunk every step (or --replan-every), overlapping predictions averaged with weights exp(-coeff·i), oldest first (ACT uses 0.01)",
    )
    .option(
      '--execution <mode>',
      'how the robot meets latency: sync (wait, holding still), async (switch on arrival), ensemble (--temporal-ensemble), rtc (send the committed actions; the server continues them)',
    )
    .option(
      '--latency-ms <ms>',
      'simulated inference latency, in ms or a range LOW-HIGH drawn per request: the robot executes ceil(ms / control period) steps while a chunk computes',
    )
    .option(
      '--action-mode <mode>',
      'joint_position, or joint_velocity (single arm, as openpi DROID policies emit)',
      'joint_position',
    )
    .option(
      '--swap-prompts',
      'ask for another cube than the scene drew (pick_place): a policy that reads its prompt follows it',
    )
    .option('--max-steps <n>', "episode length in steps (default: the task's; LeRobot's env.episode_length)")
    .option('--infer-timeout <s>', 'fail an episode when the server takes longer than this to answer', '120')
    .option('--videos <n>', 'MP4s of the first N episodes of each task', '2')
    .option('--out <dir>', 'eval_info.json and videos/ go here', 'outputs/sim_eval')
    .option('--json', 'print the report as JSON instead of tables')
    .action(
      async (opts: {
        task: string;
        url?: string;
        checkpoint?: string;
        noiseScale?: string;
        apiKey?: string;
        episodes: string;
        workers: string;
        seed: string;
        replanEvery?: string;
        temporalEnsemble?: string;
        execution?: string;
        latencyMs?: string;
        actionMode: string;
        swapPrompts?: boolean;
        maxSteps?: string;
        inferTimeout: string;
        videos: string;
        out: string;
        json?: boolean;
      }) => {
        const { checkpointSceneDrift } = await import('../sim/provenance.js');
        const { getTask } = await import('../sim/tasks/index.js');
        const names = opts.task
          .split(',')
          .map((t) => t.trim())
          .filter((t) => t !== '');
        const tasks = names.map((n) => getTask(n).task);
        if (tasks.length === 0) throw new UserError('--task: expected at least one task name');
        if (opts.actionMode !== 'joint_position' && opts.actionMode !== 'joint_velocity') {
          throw new UserError(`--action-mode ${opts.actionMode}: expected joint_position or joint_velocity`);
        }
        // Every number checked before a checkpoint is served: a typo costs no model load.
        const ensemble = numberOption('temporal-ensemble', opts.temporalEnsemble, 0);
        const { EXECUTION_MODES } = await import('@vla-orchestrator/client');
        const execution = opts.execution as (typeof EXECUTION_MODES)[number] | undefined;
        if (execution !== undefined && !EXECUTION_MODES.includes(execution))
          throw new UserError(`--execution ${opts.execution}: expected one of ${EXECUTION_MODES.join(', ')}`);
        if (execution !== undefined && execution !== 'ensemble' && ensemble !== undefined)
          throw new UserError(
            `--temporal-ensemble: only with --execution ensemble, got --execution ${execution}`,
          );
        const latencyMs = latencyOption(opts.latencyMs);
        const episodes = intOption('episodes', opts.episodes, 1)!;
        const workers = intOption('workers', opts.workers, 1)!;
        const seed = intOption('seed', opts.seed, 0)!;
        const replanEvery = intOption('replan-every', opts.replanEvery, 1);
        const maxSteps = intOption('max-steps', opts.maxSteps, 1);
        const inferTimeoutMs = 1000 * intOption('infer-timeout', opts.inferTimeout, 1)!;
        const videos = intOption('videos', opts.videos, 0)!;
        const noiseScale = noiseScaleOption(opts.noiseScale);
        if (noiseScale !== undefined && !opts.checkpoint)
          throw new UserError(
            '--noise-scale: only with --checkpoint (a running server was started with its own)',
          );
        if (!opts.url === !opts.checkpoint) {
          throw new UserError(
            'vla sim eval: expected --url ws://HOST:PORT or --checkpoint DIR (one of them)',
          );
        }
        const { runEval } = await import('../sim/eval.js');
        const { serveCheckpointForRobots } = await import('../jobs/evaluation.js');
        const warnings: string[] = [];
        if (opts.checkpoint) {
          for (const task of tasks) {
            const drift = checkpointSceneDrift(opts.checkpoint, task);
            if (drift) {
              console.error(`warning: ${drift}`);
              warnings.push(drift);
            }
          }
        }
        const perTask: TaskInfo[] = [];
        let ran = 0;
        // Served once for each robot the tasks run (a generalist base's several).
        const local = opts.checkpoint
          ? await serveCheckpointForRobots(
              opts.checkpoint,
              tasks.map((t) => t.robot),
              {
                backend: program.opts<{ backend?: string }>().backend,
                noiseScale,
                sampler: samplerChoiceFromEnv(),
              },
            )
          : null;
        try {
          for (const task of tasks) {
            const bar = progressBar(`evaluating ${task.name}`, episodes);
            let done = 0;
            const t0 = performance.now();
            const report = await runEval(
              {
                task: task.name,
                url: local?.urlFor(task.robot.name) ?? opts.url!,
                apiKey: opts.apiKey ?? process.env.VLA_API_KEY ?? null,
                episodes,
                workers,
                seed,
                replanEvery,
                temporalEnsemble: ensemble,
                execution,
                latencyMs,
                actionMode: opts.actionMode,
                swapPrompts: opts.swapPrompts,
                maxSteps,
                inferTimeoutMs,
                videos,
                videoDir: path.join(opts.out, 'videos'),
              },
              (r) => {
                done++;
                if (r.error)
                  console.error(`${task.name} episode ${r.episode} (seed ${r.seed}) failed: ${r.error}`);
                bar(done, '');
              },
            );
            const seconds = (performance.now() - t0) / 1000;
            ran += report.results.filter((r) => r.error === undefined).length;
            perTask.push({
              task: task.name,
              aggregated: { ...report.summary, eval_s: seconds, eval_ep_s: seconds / episodes },
              per_episode: report.results.map((r) => ({
                episode_ix: r.episode,
                seed: r.seed,
                prompt: r.prompt,
                sum_reward: r.sumReward,
                max_reward: r.maxReward,
                success: r.success,
                success_step: r.successStep,
                steps: r.steps,
                ...(r.motion && {
                  chunk_boundaries: r.motion.boundaries,
                  boundary_jump_max: r.motion.jumpMax,
                  boundary_jump_mean: r.motion.jumpMean,
                  step_mean: r.motion.stepMean,
                  boundary_joint_jump_mean: r.motion.jointJumpMean,
                  joint_step_mean: r.motion.jointStepMean,
                  mean_squared_jerk: r.motion.meanSquaredJerk,
                }),
                ...(r.error !== undefined && { error: r.error }),
              })),
              videos: report.videos,
            });
          }
        } finally {
          await local?.close();
        }
        const mean = (f: (a: TaskInfo['aggregated']) => number) =>
          perTask.reduce((sum, t) => sum + f(t.aggregated), 0) / perTask.length;
        const info = {
          per_task: perTask,
          overall: {
            episodes: episodes * perTask.length,
            pc_success: mean((a) => a.pc_success),
            avg_sum_reward: mean((a) => a.avg_sum_reward),
            avg_max_reward: mean((a) => a.avg_max_reward),
          },
          ...(local && { checkpoint: opts.checkpoint, noise_scale: local.noiseScale }),
          ...(maxSteps !== undefined && { max_steps: maxSteps }),
          ...(warnings.length > 0 && { warnings }),
        };
        const file = path.join(opts.out, 'eval_info.json');
        writeJson(file, info);
        if (opts.json) {
          console.log(JSON.stringify(info, null, 2));
        } else {
          console.log(
            table(
              [
                'task',
                'episodes',
                'pc_success',
                'avg_sum_reward',
                'avg_max_reward',
                'errors',
                'success_s',
                'jump_max',
                'jump_mean',
                'sq_jerk',
              ],
              perTask.map(({ aggregated: s }) => [
                s.task,
                String(s.episodes),
                s.pc_success.toFixed(1),
                s.avg_sum_reward.toFixed(2),
                s.avg_max_reward.toFixed(2),
                String(s.failed),
                s.avg_success_s === null ? '-' : s.avg_success_s.toFixed(2),
                s.boundary_jump_max.toFixed(3),
                s.boundary_jump_mean.toFixed(3),
                s.mean_squared_jerk.toExponential(2),
              ]),
            ),
          );
          console.log(`\n${JSON.stringify(info.overall)}`);
          const videos = perTask.flatMap((t) => t.videos);
          console.log(`report: ${file}; videos: ${videos.join(', ') || 'none'}`);
          for (const w of warnings) console.log(`warning: ${w}`);
        }
        if (ran === 0) throw new UserError('vla sim eval: no episode could run (see the reasons above)');
      },
    );

  registerSweep(sim);
}

/** `--latency-ms 100` or `--latency-ms 50-150`: [low, high] in ms, or undefined when not given. */
function latencyOption(raw: string | undefined): [number, number] | undefined {
  if (raw === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?))?\s*$/.exec(raw);
  const lo = m ? Number(m[1]) : Number.NaN;
  const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
  if (!(lo >= 0 && hi >= lo))
    throw new UserError(
      `--latency-ms ${raw}: expected milliseconds, or a range LOW-HIGH with LOW <= HIGH (e.g. 100 or 50-150)`,
    );
  return [lo, hi];
}
