/** The `vla` commander program, built without being run: main.ts parses argv with it, tests inspect it. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { PACKAGE_ROOT } from '../config/package-root.js';
import { registerConfig } from './config.js';
import { registerDoctor } from './doctor.js';

const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };

/**
 * The command groups, in --help order, each in `src/cli/<name>.ts` exporting `register(program)`.
 * A group's file only declares its commands: each action imports what it runs when it runs (datasets,
 * TensorFlow.js, MuJoCo, SQLite), so --help, which loads every group, loads none of that. Only the
 * group a command names is registered; --help and anything unrecognised register them all.
 */
const GROUPS = ['data', 'train', 'infer', 'jobs', 'serve', 'client', 'sim', 'demo', 'worker', 'dashboard'];

/** Global options that take a value, to skip when looking for the command's name. */
const VALUE_OPTIONS = new Set(['--backend', '--blas-threads', '--wasm-threads']);

function requestedCommand(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (VALUE_OPTIONS.has(a)) i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

export async function buildProgram(argv: string[] = process.argv): Promise<Command> {
  const program = new Command('vla')
    .description('vla-orchestrator: fine-tune and serve π0-style vision-language-action policies')
    .version(pkg.version)
    .option('--verbose', 'print stack traces with errors')
    .option('--backend <name>', 'TensorFlow.js backend: auto, or one that vla doctor lists (env VLA_BACKEND)')
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
  const wanted = requestedCommand(argv.slice(2));
  const always = ['config', 'doctor'];
  const load = always.includes(wanted ?? '') ? [] : GROUPS.includes(wanted ?? '') ? [wanted!] : GROUPS;
  for (const name of load) {
    const mod = (await import(/* @vite-ignore */ `./${name}.js`)) as { register: (p: Command) => void };
    mod.register(program);
  }
  registerDoctor(program);
  return program;
}
