/** `vla serve` as a real process on a free port, for the tests and benchmarks that need one. */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  url: string;
  /** Everything it printed so far, stdout and stderr together. */
  out(): string;
}

/** Starts `vla serve ARGS --port 0` and resolves once it listens; rejects with its output if it exits. */
export async function startServe(args: string[]): Promise<ServeProcess> {
  const child = spawn(process.execPath, [VLA, 'serve', ...args, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /on ws:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`vla serve exited with ${code}: ${out}`)));
  });
  return { child, port, url: `ws://127.0.0.1:${port}`, out: () => out };
}

/** SIGTERM (a graceful shutdown) and its exit code; the code it already exited with, if it has. */
export async function stopServe(s: ServeProcess): Promise<number | null> {
  if (s.child.exitCode !== null) return s.child.exitCode;
  const exited = new Promise<number | null>((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  return exited;
}
