import { CommanderError } from 'commander';
import { UserError } from '../config/errors.js';
import { buildProgram } from './program.js';

async function main(): Promise<void> {
  const program = await buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    const verbose = program.opts<{ verbose?: boolean }>().verbose || process.argv.includes('--verbose');
    const err = e as Error;
    // The client package is loaded here only when an error needs telling apart: --help never pays for it.
    const { ClientError } = await import('@vla-orchestrator/client');
    const known = err instanceof UserError || err instanceof ClientError;
    console.error(`vla: error: ${known ? err.message : `${err.name}: ${err.message}`}`);
    if (verbose && err.stack) console.error(err.stack);
    else if (!known) console.error('(run with --verbose for the stack trace)');
    process.exit(1);
  }
}

await main();
