import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { PolicyClient } from '@vla-orchestrator/client';
import { describe, expect, it } from 'vitest';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';

const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');

function start(args: string[]): { child: ChildProcess; out: () => string; ready: Promise<string> } {
  const child = spawn(process.execPath, [VLA, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /on (ws:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`vla serve exited with ${code}: ${out}`)));
  });
  return { child, out: () => out, ready };
}

describe('vla serve (a real process)', () => {
  it('serves zeros for a named config with its metadata, and exits cleanly on SIGTERM with a summary', async () => {
    // Port 0: the kernel's free port, printed back (a random fixed port can collide on a busy machine).
    const server = start(['pi0_aloha', '--policy', 'zeros', '--port', '0']);
    const url = await server.ready;
    expect(url).toMatch(/^ws:\/\/127\.0\.0\.1:[1-9]\d*$/);
    const client = await PolicyClient.connect(url);
    expect(client.metadata).toEqual({ reset_pose: [0, -1.5, 1.5, 0, 0, 0] });
    const reply = await client.infer(exampleObservation(loadRobot('aloha')));
    expect([reply.horizon, reply.actionDim]).toEqual([50, 14]);
    const exited = new Promise<number | null>((r) => server.child.once('exit', r));
    server.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(server.out()).toMatch(/served 1 requests to 1 connections, 0 errors/);
  });

  it('warns when serving the network without an API key; refuses contradictory flags clearly', async () => {
    const server = start(['--robot', 'droid', '--policy', 'zeros', '--host', '0.0.0.0', '--port', '0']);
    await server.ready;
    expect(server.out()).toMatch(/warning: serving on 0\.0\.0\.0 without --api-key/);
    server.child.kill('SIGINT');
    await new Promise((r) => server.child.once('exit', r));

    const bad = start(['--robot', 'droid', '--policy', 'ones']);
    await expect(bad.ready).rejects.toThrow(/--policy ones: expected zeros, sleep:MS, or replay:DATASET/);

    // A robot the config never trains is refused, naming the robots it does.
    const other = start(['pi0_aloha', '--robot', 'droid', '--policy', 'zeros']);
    await expect(other.ready).rejects.toThrow(
      /--robot: config pi0_aloha was trained for robot aloha, not droid/,
    );
  });
});
