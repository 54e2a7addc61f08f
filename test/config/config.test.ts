import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/config/errors.js';
import { deepMerge, listNamed, parseOverride, resolveConfig } from '../../src/config/load.js';
import { ServeConfig } from '../../src/config/schema.js';

/** A workspace with its own configs/ folder, as a user's project has. */
function workspace(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-config-'));
  mkdirSync(path.join(dir, 'configs'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, 'configs', name), text);
  return dir;
}

function errorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return e as UserError;
  }
  throw new Error('expected an error');
}

describe('named configs', () => {
  it('lists the shipped configs and resolves each one', () => {
    const names = listNamed('configs').map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(['pi0_aloha', 'pi0_aloha_lora', 'pi0_droid', 'pi0_libero']));
    for (const name of names) expect(resolveConfig(name).config.name).toBe(name);
  });

  it('follows extends: the child overrides, the parent fills in, defaults fill the rest', () => {
    const { config, files } = resolveConfig('pi0_aloha_lora');
    expect(files.map((f) => path.basename(f))).toEqual(['pi0_aloha_lora.yaml', 'pi0_aloha.yaml']);
    expect(config.model.lora).toEqual({
      rank: 16,
      alpha: 16,
      targets: ['*/attn/*/kernel', '*/mlp/*/kernel'],
    });
    expect(config.train.freeze).toEqual(['prefix/*', 'expert/*']);
    expect(config.train.steps).toBe(20000); // from the parent
    expect(config.train.schedule.peak_lr).toBe(2.5e-4); // from the parent
    expect(config.train.optimizer.b2).toBe(0.95); // schema default
    expect(config.serve.port).toBe(8000);
    expect(config.data.delta_action_mask).toHaveLength(14);
  });

  it('applies --set overrides with YAML-typed values', () => {
    const { config } = resolveConfig('pi0_droid', [
      'train.batch_size=16',
      'train.schedule.name=constant',
      'data.default_prompt=pick up the cube',
      'train.freeze=[prefix/*]',
      'train.ema_decay=null',
    ]);
    expect(config.train.batch_size).toBe(16);
    expect(config.train.schedule.name).toBe('constant');
    expect(config.data.default_prompt).toBe('pick up the cube');
    expect(config.train.freeze).toEqual(['prefix/*']);
    expect(config.train.ema_decay).toBeNull();
  });

  it('names the override, the field, the expected and the actual value', () => {
    const err = errorOf(() => resolveConfig('pi0_droid', ['train.batch_size=sixteen']));
    expect(err.message).toContain('--set train.batch_size');
    expect(err.message).toContain('expected number');
    expect(err.message).toContain('"sixteen" (string)');
    expect(errorOf(() => parseOverride('train.batch_size')).message).toContain('expected KEY=VALUE');
  });

  it('model.noise_scale defaults to π0 sampling (1) and is bounded', () => {
    expect(resolveConfig('pi0_droid').config.model.noise_scale).toBe(1);
    expect(resolveConfig('pi0_droid', ['model.noise_scale=0']).config.model.noise_scale).toBe(0);
    const err = errorOf(() => resolveConfig('pi0_droid', ['model.noise_scale=-0.5']));
    expect(err.message).toContain('--set model.noise_scale');
    expect(err.message).toContain('-0.5');
  });

  it('names the file and line, the field path, the expected and the actual value', () => {
    const dir = workspace({
      'bad.yaml': [
        'extends: pi0_aloha',
        'train:',
        '  batch_size: 3.5',
        '  optimzer: { b1: 0.9 }',
        'model:',
        '  preset: huge',
      ].join('\n'),
    });
    const msg = errorOf(() => resolveConfig('bad', [], dir)).message;
    expect(msg).toContain('configs/bad.yaml:3: train.batch_size: expected an integer, got 3.5 (number)');
    expect(msg).toMatch(/configs\/bad\.yaml:4: train\.optimzer: unknown field \(known here: .*optimizer/);
    expect(msg).toContain(
      'configs/bad.yaml:6: model.preset: expected one of "tiny", "small", "base", got "huge"',
    );
  });

  it('points at the parent file when the bad value is inherited', () => {
    const dir = workspace({
      'parent.yaml': 'robot: aloha\ntrain:\n  seed: -1\n',
      'child.yaml': 'extends: parent\ntrain:\n  steps: 10\n',
    });
    const msg = errorOf(() => resolveConfig('child', [], dir)).message;
    expect(msg).toContain('configs/parent.yaml:3: train.seed: expected a value >= 0, got -1 (number)');
  });

  it('reports a missing required field, invalid YAML, unknown names and extends cycles', () => {
    const dir = workspace({
      'norobot.yaml': 'train:\n  steps: 10\n',
      'broken.yaml': 'train: [unclosed\n',
      'a.yaml': 'extends: b\nrobot: aloha\n',
      'b.yaml': 'extends: a\n',
    });
    expect(errorOf(() => resolveConfig('norobot', [], dir)).message).toContain(
      'robot: expected string, got nothing (missing)',
    );
    expect(errorOf(() => resolveConfig('broken', [], dir)).message).toMatch(
      /configs\/broken\.yaml:\d+: invalid YAML/,
    );
    expect(errorOf(() => resolveConfig('a', [], dir)).message).toContain('extends forms a cycle');
    expect(errorOf(() => resolveConfig('nope', [], dir)).message).toMatch(
      /unknown config "nope": expected one of .*pi0_aloha/,
    );
  });

  it('a workspace config shadows the shipped one of the same name', () => {
    const dir = workspace({ 'pi0_droid.yaml': 'robot: droid\ndescription: mine\n' });
    expect(resolveConfig('pi0_droid', [], dir).config.description).toBe('mine');
  });

  it('merges maps key by key and replaces lists', () => {
    expect(deepMerge({ a: { x: 1, y: [1, 2] }, b: 1 }, { a: { y: [3] }, c: 2 })).toEqual({
      a: { x: 1, y: [3] },
      b: 1,
      c: 2,
    });
  });
});

describe('serve limits', () => {
  it('refuses a receive budget below the message limit, naming both', () => {
    const r = ServeConfig.safeParse({ max_message_mb: 16, max_receiving_mb: 4 });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]).toMatchObject({
      path: ['max_receiving_mb'],
      message: 'expected at least max_message_mb (16), got 4',
    });
    expect(ServeConfig.parse({}).max_receiving_mb).toBe(256);
  });

  it('train.rtc.max_delay below the action horizon, named with both numbers', () => {
    expect(resolveConfig('pi0_aloha', ['train.rtc.max_delay=49']).config.train.rtc).toEqual({
      max_delay: 49,
    });
    expect(() => resolveConfig('pi0_aloha', ['train.rtc.max_delay=50'])).toThrow(
      '--set train.rtc.max_delay: expected fewer steps than model.action_horizon (50), got 50',
    );
  });

  it('train.eval_task: one task or a list of tasks, each once', () => {
    const tasks = (set: string) => resolveConfig('pi0_droid', [set]).config.train.eval_task;
    expect(tasks('train.eval_task=stack')).toEqual(['stack']);
    expect(tasks('train.eval_task=[aloha_transfer_cube, pick_place]')).toEqual([
      'aloha_transfer_cube',
      'pick_place',
    ]);
    expect(tasks('train.eval_task=null')).toBeNull();
    expect(() => tasks('train.eval_task=[stack, stack]')).toThrow(
      '--set train.eval_task: expected each task once, got stack twice in ["stack","stack"]',
    );
    const err = errorOf(() => tasks('train.eval_task=3'));
    expect(err.message).toContain('--set train.eval_task');
    expect(err.message).toContain('expected array');
    expect(err.message).toContain('3 (number)');
  });
});
