import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { listNamed, loadRobot } from '../../src/config/load.js';
import { actionDim, stateDim } from '../../src/config/robot.js';

describe('robot specs', () => {
  it('ALOHA: 14 dims in ALOHA order, four CHW cameras, 50 Hz, only cam_high required', () => {
    const spec = loadRobot('aloha');
    expect(stateDim(spec)).toBe(14);
    expect(actionDim(spec)).toBe(14);
    expect(spec.state.names[6]).toBe('left_gripper');
    expect(spec.state.names[13]).toBe('right_gripper');
    expect(spec.control_hz).toBe(50);
    expect(spec.cameras.map((c) => c.name)).toEqual([
      'cam_high',
      'cam_low',
      'cam_left_wrist',
      'cam_right_wrist',
    ]);
    expect(spec.cameras.every((c) => c.layout === 'chw' && c.shape.join() === '3,224,224')).toBe(true);
    expect(spec.cameras.filter((c) => c.required).map((c) => c.name)).toEqual(['cam_high']);
    expect(spec.cameras[0]!.key).toEqual(['images', 'cam_high']);
    expect(spec.state.parts).toEqual([{ key: 'state', dim: 14, scalar_ok: false }]);
  });

  it('DROID: 7 joints + gripper from two keys, exterior + wrist cameras, 15 Hz', () => {
    const spec = loadRobot('droid');
    expect(stateDim(spec)).toBe(8);
    expect(actionDim(spec)).toBe(8);
    expect(spec.control_hz).toBe(15);
    expect(spec.state.parts.map((p) => [p.key, p.dim, p.scalar_ok])).toEqual([
      ['observation/joint_position', 7, false],
      ['observation/gripper_position', 1, true],
    ]);
    expect(spec.cameras.map((c) => [c.key, c.layout])).toEqual([
      ['observation/exterior_image_1_left', 'hwc'],
      ['observation/wrist_image_left', 'hwc'],
    ]);
  });

  it('LIBERO: 8-dim state, 7-dim action, image + wrist image', () => {
    const spec = loadRobot('libero');
    expect(stateDim(spec)).toBe(8);
    expect(actionDim(spec)).toBe(7);
    expect(spec.cameras.map((c) => c.key)).toEqual(['observation/image', 'observation/wrist_image']);
  });

  it('every shipped spec is valid', () => {
    for (const r of listNamed('robots')) expect(loadRobot(r.file).name).toBe(r.name);
  });

  it('rejects a spec whose parts do not add up, with the file and field', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-robot-'));
    mkdirSync(path.join(dir, 'robots'));
    writeFileSync(
      path.join(dir, 'robots', 'bad.yaml'),
      [
        'name: bad',
        'control_hz: 10',
        'state:',
        '  names: [a, b]',
        '  parts: [{ key: s, dim: 3 }]',
        'action: { names: [a] }',
        'cameras: [{ name: c, key: img, shape: [224, 224, 4], layout: hwc }]',
      ].join('\n'),
    );
    expect(() => loadRobot('bad', dir)).toThrow(
      /robots\/bad\.yaml:5: state\.parts: state parts add up to 3 dims/,
    );
    expect(() => loadRobot('bad', dir)).toThrow(/cameras\.0\.shape: expected 3 colour channels/);
  });
});
