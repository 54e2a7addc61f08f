/**
 * Observations in openpi's shapes for a robot spec, with random content: what `vla client bench` sends
 * and what tests use to talk to a server as a real robot would.
 */

import { NdArray, setObsValue } from '@vla-orchestrator/client';
import type { RobotSpec } from '../config/robot.js';

/** A small xorshift so examples are reproducible from a seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

export interface ExampleOptions {
  seed?: number;
  /** Leave out the cameras that are not required (openpi's ALOHA sim client sends only cam_high). */
  requiredCamerasOnly?: boolean;
  prompt?: string | null;
}

export function exampleObservation(spec: RobotSpec, opts: ExampleOptions = {}): Record<string, unknown> {
  const rand = rng(opts.seed ?? 1);
  const obs: Record<string, unknown> = {};
  for (const part of spec.state.parts) {
    const data = new Float64Array(part.dim);
    for (let i = 0; i < part.dim; i++) data[i] = rand() * 2 - 1;
    setObsValue(obs, part.key, new NdArray(data, [part.dim]));
  }
  for (const cam of spec.cameras) {
    if (opts.requiredCamerasOnly && !cam.required) continue;
    const n = cam.shape[0] * cam.shape[1] * cam.shape[2];
    const data = new Uint8Array(n);
    const words = new Uint32Array(data.buffer, 0, n >>> 2);
    for (let i = 0; i < words.length; i++) words[i] = (rand() * 4294967296) >>> 0;
    setObsValue(obs, cam.key, new NdArray(data, cam.shape));
  }
  const prompt = opts.prompt === undefined ? 'do something' : opts.prompt;
  if (prompt !== null) setObsValue(obs, spec.prompt_key, prompt);
  return obs;
}
