/**
 * A `vla` command group run in this process through its own commander wiring: for commands that answer
 * before any heavy work, where a real process would only add seconds of start-up on a loaded machine.
 */
import { Command } from 'commander';
import { vi } from 'vitest';

export interface CommandOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runInProcess(
  register: (program: Command) => void,
  args: string[],
  cwd?: string,
): Promise<CommandOutcome> {
  const program = new Command('vla').exitOverride();
  register(program);
  let stdout = '';
  let stderr = '';
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
    stdout += `${a.join(' ')}\n`;
  });
  const err = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => {
    stderr += `${a.join(' ')}\n`;
  });
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  });
  const before = process.cwd();
  if (cwd) process.chdir(cwd);
  try {
    await program.parseAsync(args, { from: 'user' });
    return { code: 0, stdout, stderr };
  } catch (e) {
    return { code: 1, stdout, stderr: `${stderr}vla: error: ${(e as Error).message}\n` };
  } finally {
    process.chdir(before);
    log.mockRestore();
    err.mockRestore();
    write.mockRestore();
  }
}
