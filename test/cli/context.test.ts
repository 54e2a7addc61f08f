import { describe, expect, it } from 'vitest';
import { frameCacheFromEnv, samplerChoiceFromEnv } from '../../src/cli/context.js';

describe('the sampler choice, read at the command edge', () => {
  it('reads VLA_SAMPLER and VLA_SAMPLER_THREADS, and names a bad value', () => {
    expect(samplerChoiceFromEnv({})).toEqual({});
    expect(samplerChoiceFromEnv({ VLA_SAMPLER: 'native', VLA_SAMPLER_THREADS: '' })).toEqual({});
    expect(samplerChoiceFromEnv({ VLA_SAMPLER: 'tfjs', VLA_SAMPLER_THREADS: '2' })).toEqual({
      sampler: 'tfjs',
      threads: 2,
    });
    expect(() => samplerChoiceFromEnv({ VLA_SAMPLER: 'tfsj' })).toThrow(
      'VLA_SAMPLER: expected native or tfjs, got "tfsj"',
    );
    expect(() => samplerChoiceFromEnv({ VLA_SAMPLER_THREADS: '4' })).toThrow(
      'VLA_SAMPLER_THREADS: expected 1 or 2, got "4"',
    );
    expect(() => samplerChoiceFromEnv({ VLA_SAMPLER_THREADS: 'three' })).toThrow(
      'VLA_SAMPLER_THREADS: expected 1 or 2, got "three"',
    );
  });
});

describe('the frame cache, as the environment asks at the command edge', () => {
  it('reads VLA_CACHE_DIR and VLA_CACHE_MEM_MB, and names a bad value', () => {
    expect(frameCacheFromEnv({})).toEqual({});
    expect(frameCacheFromEnv({ VLA_CACHE_DIR: '/x/frames', VLA_CACHE_MEM_MB: '0.5' })).toEqual({
      dir: '/x/frames',
      memoryBytes: 512 * 1024,
    });
    expect(() => frameCacheFromEnv({ VLA_CACHE_MEM_MB: 'lots' })).toThrow(
      'VLA_CACHE_MEM_MB: expected a number of MiB >= 0, got "lots"',
    );
  });
});
