/**
 * Check an observation against the robot spec and pull out what the policy needs. Everything wrong
 * becomes an ObservationError naming the field, what was expected and what arrived.
 */
import {
  ACTION_PREFIX_KEY,
  getObsValue,
  INFERENCE_DELAY_KEY,
  keyName,
  NdArray,
} from '@vla-orchestrator/client';
import type { RobotSpec } from '../config/robot.js';

export class ObservationError extends Error {
  override name = 'ObservationError';
}

export interface CameraImage {
  /** uint8 pixels, a view into the request when possible. */
  data: Uint8Array;
  height: number;
  width: number;
  layout: 'hwc' | 'chw';
}

export interface Observation {
  /** The robot's state in the spec's order, float32. */
  state: Float32Array;
  /** Every camera of the spec; null where the client did not send it (a masked image). */
  images: Record<string, CameraImage | null>;
  prompt: string | null;
  /**
   * Real-time chunking: the actions the robot has committed to, float32 [steps, action dims] in its
   * action space (step 0 executed when the observation was taken), and how many of them certainly run
   * before the new chunk arrives. Absent unless the robot sent `action_prefix`.
   */
  actionPrefix?: { actions: Float32Array; steps: number; delay: number };
}

function what(value: unknown): string {
  if (value === undefined) return 'nothing (missing)';
  if (value instanceof NdArray) return `${value.dtype}[${value.shape.join(', ')}]`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object') return `a map with keys ${Object.keys(value).slice(0, 6).join(', ')}`;
  return `${typeof value} ${JSON.stringify(value).slice(0, 40)}`;
}

const NUMERIC = new Set(['<f4', '<f8', '|u1', '|i1', '<i2', '<u2', '<i4', '<u4', '<i8', '<u8']);

function readState(spec: RobotSpec, obs: Record<string, unknown>): Float32Array {
  const state = new Float32Array(spec.state.names.length);
  let offset = 0;
  for (const part of spec.state.parts) {
    const field = keyName(part.key);
    const value = getObsValue(obs, part.key);
    const expected = `a float array of shape [${part.dim}]${part.scalar_ok ? ' (or a scalar)' : ''}`;
    const scalarOk = part.scalar_ok && part.dim === 1;
    let values: ArrayLike<number | bigint>;
    if (scalarOk && typeof value === 'number') values = [value];
    else if (
      value instanceof NdArray &&
      NUMERIC.has(value.dtype) &&
      ((value.shape.length === 1 && value.shape[0] === part.dim) || (scalarOk && value.shape.length === 0))
    ) {
      values = value.data;
    } else throw new ObservationError(`${field}: expected ${expected}, got ${what(value)}`);
    for (let i = 0; i < part.dim; i++) {
      const v = Number(values[i]);
      state[offset] = v;
      // The model computes in float32: a float64 past its range (3.5e38) would enter as infinity.
      if (!Number.isFinite(state[offset]!)) {
        throw new ObservationError(
          `${field}[${i}]: expected a finite number within float32's range (±3.4e38), got ${v}`,
        );
      }
      offset++;
    }
  }
  return state;
}

function readImage(name: string, value: NdArray): CameraImage {
  if (value.dtype !== '|u1' || value.shape.length !== 3) {
    throw new ObservationError(`${name}: expected a uint8 image [H, W, 3] or [3, H, W], got ${what(value)}`);
  }
  const [a, b, c] = value.shape as [number, number, number];
  if (c === 3 && a > 0 && b > 0)
    return { data: value.data as Uint8Array, height: a, width: b, layout: 'hwc' };
  if (a === 3 && b > 0 && c > 0)
    return { data: value.data as Uint8Array, height: b, width: c, layout: 'chw' };
  throw new ObservationError(`${name}: expected a uint8 image [H, W, 3] or [3, H, W], got ${what(value)}`);
}

/** Validate one decoded observation against the robot spec. */
export function parseObservation(spec: RobotSpec, decoded: unknown): Observation {
  if (
    decoded === null ||
    typeof decoded !== 'object' ||
    decoded instanceof NdArray ||
    Array.isArray(decoded)
  ) {
    throw new ObservationError(`observation: expected a map of observation keys, got ${what(decoded)}`);
  }
  const obs = decoded as Record<string, unknown>;
  const state = readState(spec, obs);
  const images: Record<string, CameraImage | null> = {};
  for (const cam of spec.cameras) {
    const value = getObsValue(obs, cam.key);
    const field = keyName(cam.key);
    if (value === undefined || value === null) {
      if (cam.required) {
        throw new ObservationError(
          `${field}: expected a uint8 image [${cam.shape.join(', ')}] (camera ${cam.name} is required), got nothing (missing)`,
        );
      }
      images[cam.name] = null;
      continue;
    }
    if (!(value instanceof NdArray)) {
      throw new ObservationError(
        `${field}: expected a uint8 image [${cam.shape.join(', ')}], got ${what(value)}`,
      );
    }
    images[cam.name] = readImage(field, value);
  }
  const rawPrompt = getObsValue(obs, spec.prompt_key);
  if (rawPrompt !== undefined && rawPrompt !== null && typeof rawPrompt !== 'string') {
    throw new ObservationError(`${keyName(spec.prompt_key)}: expected a string, got ${what(rawPrompt)}`);
  }
  const prompt = (rawPrompt as string | undefined) ?? null;
  const actionPrefix = readActionPrefix(spec, obs);
  return actionPrefix ? { state, images, prompt, actionPrefix } : { state, images, prompt };
}

/** `action_prefix` [P, action dims] and `inference_delay` (0..P), or undefined when neither is sent. */
function readActionPrefix(spec: RobotSpec, obs: Record<string, unknown>): Observation['actionPrefix'] {
  const value = obs[ACTION_PREFIX_KEY];
  const rawDelay = obs[INFERENCE_DELAY_KEY];
  if (value === undefined || value === null) {
    if (rawDelay !== undefined && rawDelay !== null)
      throw new ObservationError(
        `${INFERENCE_DELAY_KEY}: expected it only beside ${ACTION_PREFIX_KEY}, got ${what(rawDelay)} without one`,
      );
    return undefined;
  }
  const dim = spec.action.names.length;
  if (
    !(value instanceof NdArray) ||
    (value.dtype !== '<f4' && value.dtype !== '<f8') ||
    value.shape.length !== 2 ||
    value.shape[1] !== dim ||
    !(value.shape[0]! >= 1)
  ) {
    throw new ObservationError(
      `${ACTION_PREFIX_KEY}: expected a float array [steps >= 1, ${dim}] of the robot's actions, got ${what(value)}`,
    );
  }
  const steps = value.shape[0]!;
  const actions = Float32Array.from(value.data as ArrayLike<number>);
  const bad = actions.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0)
    throw new ObservationError(
      `${ACTION_PREFIX_KEY}[${Math.floor(bad / dim)}][${bad % dim}]: expected a finite number within float32's range, got ${Number((value.data as ArrayLike<number>)[bad])}`,
    );
  const delay = rawDelay === undefined || rawDelay === null ? 0 : rawDelay;
  if (typeof delay !== 'number' || !Number.isInteger(delay) || delay < 0 || delay > steps)
    throw new ObservationError(
      `${INFERENCE_DELAY_KEY}: expected an integer in 0..${steps} (the prefix's steps), got ${what(rawDelay)}`,
    );
  return { actions, steps, delay };
}
