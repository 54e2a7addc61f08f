import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { BACKENDS } from '../backend/index.js';
import { UserError } from '../config/errors.js';
import { PACKAGE_ROOT } from '../config/load.js';
import { registerConfig } from './config.js';
import { registerDoctor } from './doctor.js';

const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };

/**
 * The command groups, in --help order. Each lives in `src/cli/<name>.ts` exporting
 * `register(program)`; a group whose file has not landed yet is listed and says so when called.
 */
const GROUPS: Array<[string, string]> = [
  ['data', 'LeRobot datasets: info, show, validate, import, convert, norm stats'],
  ['train', 'launch a fine-tuning job from a named config'],
  ['infer', 'sample an action chunk from a checkpoint for a dataset frame and compare it with the recording'],
  ['jobs', 'list, watch, stop, resume and plot fine-tuning jobs'],
  ['serve', 'serve a policy to robots over WebSocket (openpi wire protocol)'],
  ['client', 'robot-side tools: connect to a policy server, benchmark it'],
  ['sim', 'MuJoCo simulation: tasks, scripted experts, recording, rollouts'],
  [
    'demo',
    'serve the shipped base checkpoint and roll it out in simulation: success rates, latency, a video',
  ],
  ['worker', 'take training jobs from a Redis queue (vla jobs submit) and run them here'],
];

export async function buildProgram(): Promise<Command> {
  const program = new Command('vla')
    .description('vla-orchestrator: fine-tune and serve π0-style vision-language-action policies')
    .version(pkg.version)
    .option('--verbose', 'print stack traces with errors')
    .option('--backend <name>', `TensorFlow.js backend: auto, ${BACKENDS.join(', ')} (env VLA_BACKEND)`)
    .option('--no-native', "keep matmuls on the backend's own kernels, not OpenBLAS (env VLA_NATIVE=0)")
    .option(
      '--blas-threads <n>',
      'OpenBLAS threads for the native kernels (env OPENBLAS_NUM_THREADS; default 1)',
    )
    .option(
      '--wasm-threads <n>',
      'WASM backend threads, through a shim for tfjs-backend-wasm 4.22.0 (env VLA_WASM_THREADS)',
    )
    .showHelpAfterError('(run with --help for usage)');
  registerConfig(program);
  for (const [name, description] of GROUPS) {
    const file = path.join(import.meta.dirname, `${name}.ts`);
    if (existsSync(file)) {
      const mod = (await import(pathToFileURL(file).href)) as { register: (p: Command) => void };
      mod.register(program);
      continue;
    }
    program
      .command(name)
      .description(`${description} (not in this build yet)`)
      .allowUnknownOption()
      .argument('[args...]')
      .action(() => {
        throw new UserError(`vla ${name}: not in this build yet (see the open issues)`);
      });
  }
  registerDoctor(program);
  return program;
}

async function main(): Promise<void> {
  const program = await buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    const verbose = program.opts<{ verbose?: boolean }>().verbose || process.argv.includes('--verbose');
    const err = e as Error;
    const known = err instanceof UserError;
    console.error(`vla: error: ${known ? err.message : `${err.name}: ${err.message}`}`);
    if (verbose && err.stack) console.error(err.stack);
    else if (!known) console.error('(run with --verbose for the stack trace)');
    process.exit(1);
  }
}

await main();
