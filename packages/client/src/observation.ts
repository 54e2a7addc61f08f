/**
 * Where a value sits in an observation map. openpi's robots send flat keys (`state`,
 * `observation/joint_position`, the slash part of the name) or nested maps (`images` → `cam_high`); a
 * key path names the latter. Robots write observations with these and the server reads them the same way.
 */
import { NdArray } from './ndarray.js';

export type ObservationKey = string | readonly string[];

/** An observation as it travels: a msgpack map of NdArrays, numbers, strings and nested maps. */
export type ObservationMap = Record<string, unknown>;

/**
 * Real-time chunking's observation keys (optional; servers without them ignore them): the actions the
 * robot has committed to while this observation's chunk computes, float [P, action_dim] in the robot's
 * action space, step 0 being the one executed when the observation was taken; and the delay, the number
 * of those steps certainly executed before the new chunk can arrive (an integer in 0..P).
 */
export const ACTION_PREFIX_KEY = 'action_prefix';
export const INFERENCE_DELAY_KEY = 'inference_delay';

/** The key as one string, for messages: `images/cam_high`. */
export const keyName = (key: ObservationKey): string => (typeof key === 'string' ? key : key.join('/'));

/** The value at a key, or undefined when a map on its path is missing or is not a map. */
export function getObsValue(obs: ObservationMap, key: ObservationKey): unknown {
  if (typeof key === 'string') return obs[key];
  let node: unknown = obs;
  for (const k of key) {
    if (node === null || typeof node !== 'object' || node instanceof NdArray) return undefined;
    node = (node as Record<string, unknown>)[k];
  }
  return node;
}

/** Put a value where a robot sends it: under a flat key, or through nested maps for a key path. */
export function setObsValue(obs: ObservationMap, key: ObservationKey, value: unknown): void {
  if (typeof key === 'string') {
    obs[key] = value;
    return;
  }
  let node = obs;
  for (const k of key.slice(0, -1)) {
    node[k] ??= {};
    node = node[k] as ObservationMap;
  }
  node[key[key.length - 1]!] = value;
}
