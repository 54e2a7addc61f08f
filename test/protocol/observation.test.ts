import { NdArray } from '@vla-orchestrator/client';
import { describe, expect, it } from 'vitest';
import { loadRobot } from '../../src/config/load.js';
import { ObservationError, parseObservation } from '../../src/protocol/observation.js';

const droid = loadRobot('droid');
const libero = loadRobot('libero');
const aloha = loadRobot('aloha');
const img = (shape: number[]) => new NdArray(new Uint8Array(shape[0]! * shape[1]! * shape[2]!), shape);

describe('observations against robot specs', () => {
  it('DROID: joint_position then gripper_position make the 8-dim state; cameras by their openpi keys', () => {
    const obs = parseObservation(droid, {
      'observation/joint_position': new NdArray(Float64Array.of(1, 2, 3, 4, 5, 6, 7), [7]),
      'observation/gripper_position': new NdArray(Float32Array.of(0.25), [1]),
      'observation/exterior_image_1_left': img([224, 224, 3]),
      prompt: 'pick up the marker',
    });
    expect(Array.from(obs.state)).toEqual([1, 2, 3, 4, 5, 6, 7, 0.25]);
    expect(obs.images.exterior_image_1_left).toMatchObject({ height: 224, width: 224, layout: 'hwc' });
    expect(obs.images.wrist_image_left).toBeNull();
    expect(obs.prompt).toBe('pick up the marker');
  });

  it('LIBERO: 8-dim state, image and wrist image; a CHW image is recognised as such', () => {
    const obs = parseObservation(libero, {
      'observation/state': new NdArray(new Float64Array(8).fill(0.5), [8]),
      'observation/image': img([3, 128, 160]),
      'observation/wrist_image': img([128, 160, 3]),
    });
    expect(obs.images.image).toMatchObject({ height: 128, width: 160, layout: 'chw' });
    expect(obs.images.wrist_image).toMatchObject({ height: 128, width: 160, layout: 'hwc' });
    expect(obs.prompt).toBeNull();
  });

  it('names the field, expected and actual for each kind of mistake', () => {
    const base = () => ({
      state: new NdArray(new Float64Array(14), [14]),
      images: { cam_high: img([3, 224, 224]) },
    });
    const fails = (mutate: (o: Record<string, unknown>) => void) => {
      const o = base() as Record<string, unknown>;
      mutate(o);
      try {
        parseObservation(aloha, o);
      } catch (e) {
        expect(e).toBeInstanceOf(ObservationError);
        return (e as Error).message;
      }
      throw new Error('expected an ObservationError');
    };
    expect(fails((o) => delete o.state)).toBe(
      'state: expected a float array of shape [14], got nothing (missing)',
    );
    expect(fails((o) => (o.images = {}))).toBe(
      'images/cam_high: expected a uint8 image [3, 224, 224] (camera cam_high is required), got nothing (missing)',
    );
    expect(fails((o) => (o.prompt = 42))).toBe('prompt: expected a string, got number 42');
    expect(
      fails((o) => (o.state = new NdArray(Float64Array.of(Number.NaN, ...new Array(13).fill(0)), [14]))),
    ).toBe("state[0]: expected a finite number within float32's range (±3.4e38), got NaN");
    expect(fails((o) => ((o.images as Record<string, unknown>).cam_low = 'not an image'))).toMatch(
      /^images\/cam_low: expected a uint8 image \[3, 224, 224\], got string/,
    );
    expect(() => parseObservation(aloha, [1, 2])).toThrow(
      'observation: expected a map of observation keys, got a list of 2',
    );
  });

  it('reads real-time chunking’s committed actions and delay, and names what is wrong with them', () => {
    const base = (extra: Record<string, unknown>) => ({
      state: new NdArray(new Float64Array(14), [14]),
      images: { cam_high: img([3, 224, 224]) },
      ...extra,
    });
    const prefix = new NdArray(
      Float32Array.from({ length: 3 * 14 }, (_, i) => i / 10),
      [3, 14],
    );
    const ok = parseObservation(aloha, base({ action_prefix: prefix, inference_delay: 2 }));
    expect([ok.actionPrefix!.steps, ok.actionPrefix!.delay, ok.actionPrefix!.actions[15]]).toEqual([
      3,
      2,
      Math.fround(1.5),
    ]);
    expect(parseObservation(aloha, base({})).actionPrefix).toBeUndefined();
    expect(parseObservation(aloha, base({ action_prefix: prefix })).actionPrefix!.delay).toBe(0);
    const fails = (extra: Record<string, unknown>) => () => parseObservation(aloha, base(extra));
    expect(fails({ action_prefix: new NdArray(new Float32Array(3 * 7), [3, 7]) })).toThrow(
      "action_prefix: expected a float array [steps >= 1, 14] of the robot's actions, got <f4[3, 7]",
    );
    expect(fails({ action_prefix: prefix, inference_delay: 4 })).toThrow(
      "inference_delay: expected an integer in 0..3 (the prefix's steps), got number 4",
    );
    expect(fails({ inference_delay: 1 })).toThrow(
      'inference_delay: expected it only beside action_prefix, got number 1 without one',
    );
    const nan = new NdArray(
      Float64Array.from({ length: 14 }, (_, i) => (i === 5 ? Number.NaN : 0)),
      [1, 14],
    );
    expect(fails({ action_prefix: nan })).toThrow(
      "action_prefix[0][5]: expected a finite number within float32's range, got NaN",
    );
  });
});
