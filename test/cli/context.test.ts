import { describe, expect, it } from 'vitest';
import { samplerChoiceFromEnv } from '../../src/cli/context.js';

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
