import { describe, expect, it } from 'vitest';
import {
  alohaActionsFromPi,
  alohaActionsToPi,
  alohaStateToPi,
  gripperFromAngular,
  gripperFromAngularInv,
  gripperToAngular,
} from '../../src/transforms/aloha.js';

describe("ALOHA adapter (openpi's adapt_to_pi conventions)", () => {
  it('converts gripper positions with the Interbotix linkage (values from the formula in openpi)', () => {
    // Reference values computed independently in Python from openpi's aloha_policy formulas.
    expect(gripperToAngular(0)).toBeCloseTo(-1.0798655475132917, 6);
    expect(gripperToAngular(0.5)).toBeCloseTo(-0.1400559217021429, 6);
    expect(gripperToAngular(1)).toBeCloseTo(0.945652797407483, 6);
    expect(gripperFromAngular(0)).toBeCloseTo(0.5533778345878898, 6);
    expect(gripperFromAngular(0.5)).toBeCloseTo(0.7900866354211049, 6);
    expect(gripperFromAngular(1)).toBeCloseTo(1.0267954362543197, 6);
  });

  it('gripperFromAngularInv inverts gripperFromAngular', () => {
    for (const v of [-0.3, 0, 0.42, 1])
      expect(gripperFromAngularInv(gripperFromAngular(v))).toBeCloseTo(v, 6);
  });

  it('flips shoulder and elbow of both arms and converts both grippers, row by row', () => {
    const row = Float32Array.from([1, 2, 3, 4, 5, 6, 0.5, 1, 2, 3, 4, 5, 6, 1]);
    const state = alohaStateToPi(Float32Array.from([...row, ...row]));
    const expected = [1, -2, -3, 4, 5, 6, gripperToAngular(0.5), 1, -2, -3, 4, 5, 6, gripperToAngular(1)];
    for (let i = 0; i < 28; i++) expect(state[i]).toBeCloseTo(expected[i % 14]!, 5);
  });

  it('actions to π0 space and back are the identity', () => {
    const actions = Float32Array.from({ length: 28 }, (_, i) => Math.sin(i));
    const back = alohaActionsFromPi(alohaActionsToPi(actions.slice()));
    for (let i = 0; i < 28; i++) expect(back[i]).toBeCloseTo(actions[i]!, 5);
  });

  it('refuses rows that are not ALOHA-shaped', () => {
    expect(() => alohaStateToPi(new Float32Array(8), 8)).toThrow(/expected rows of at least 14 values/);
  });
});
