import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/config/errors.js';
import { resolveConfig } from '../../src/config/load.js';
import { ModelConfig } from '../../src/config/schema.js';
import { checkRobotFits, modelDims } from '../../src/model/config.js';

describe('model config', () => {
  it('presets fill the sizes a config leaves out', () => {
    const d = modelDims(ModelConfig.parse({ preset: 'small', depth: 2 }));
    expect(d.width).toBe(256);
    expect(d.depth).toBe(2);
    expect(d.headDim).toBe(64);
    expect(d.imageSize % d.patchSize).toBe(0);
  });

  it('an image size not divisible by the patch fails at validation, naming both', () => {
    expect(() => resolveConfig('pi0_aloha', ['model.image_size=100'])).toThrow(
      /model\.image_size: image_size 100 is not divisible by patch_size 16/,
    );
    expect(() => resolveConfig('pi0_aloha', ['model.preset=tiny', 'model.patch_size=5'])).toThrow(
      /model\.patch_size: image_size 32 is not divisible by patch_size 5/,
    );
  });

  it('a width the heads do not divide fails at validation', () => {
    expect(() => resolveConfig('pi0_aloha', ['model.width=100', 'model.heads=3'])).toThrow(
      /width 100 is not divisible by heads 3/,
    );
  });

  it('a robot with more state dims than action_dim is refused with a clear message', () => {
    const d = modelDims(ModelConfig.parse({ preset: 'tiny', action_dim: 8 }));
    expect(() => checkRobotFits(d, { stateDim: 14, actionDim: 14, cameras: 2 })).toThrow(UserError);
    expect(() => checkRobotFits(d, { stateDim: 14, actionDim: 14, cameras: 2 })).toThrow(
      /action_dim 8 is smaller than the robot's state dim 14/,
    );
    expect(() => checkRobotFits(d, { stateDim: 7, actionDim: 7, cameras: 5 })).toThrow(
      /1 to 4 cameras, got 5/,
    );
    expect(() => checkRobotFits(d, { stateDim: 8, actionDim: 7, cameras: 1 })).not.toThrow();
  });
});
