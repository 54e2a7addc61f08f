/** One replica of a data-parallel trainer (see data-parallel.ts): gradients of its part of each batch. */
import { workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendName, setupBackend } from '../backend/index.js';
import { modelDims } from '../model/config.js';
import { FastTokenizer } from '../model/fast-tokenizer.js';
import { Pi0 } from '../model/pi0.js';
import {
  flowGradients,
  type LossOptions,
  loadValues,
  readInto,
  type StepInputs,
  type WorkerSetup,
} from './data-parallel.js';

const setup = workerData as WorkerSetup;
const { layout: l, port, index } = setup;
const control = new Int32Array(setup.control);
const losses = new Float64Array(setup.losses);
const weights = new Float32Array(setup.weights);
const grads = new Float32Array(setup.grads);
const word = index * 4;

try {
  await setupBackend({
    backend: setup.backend.name as BackendName,
    native: setup.backend.native,
    precision: setup.config.train.precision,
  });
  const dims = modelDims(setup.config.model);
  const model = new Pi0(dims, setup.actionTokenizer && new FastTokenizer(setup.actionTokenizer));
  const params = new Map<string, tf.Variable>();
  const trainable = new Map<string, tf.Variable>();
  // The weights arrive with the first step (the main thread sends every one then).
  for (const [i, name] of l.names.entries()) {
    const v = tf.variable(tf.zeros(l.shapes[i]!), l.trainable[i]);
    params.set(name, v);
    if (l.trainable[i]) trainable.set(name, v);
  }
  model.frozen = new Set(l.names.filter((_, i) => !l.trainable[i]));

  const step = (m: { seq: number; all: boolean; inputs: StepInputs; opts: LossOptions }) => {
    const load = l.names.map((_, i) => i).filter((i) => m.all || l.trainable[i]);
    loadValues(
      load.map((i) => params.get(l.names[i]!)!),
      load.map((i) => weights.subarray(l.offsets[i]!, l.offsets[i]! + params.get(l.names[i]!)!.size)),
    );
    const {
      loss,
      grads: g,
      weight,
      perSample,
    } = flowGradients(model, dims, params, trainable, m.inputs, m.opts);
    try {
      for (const [i, name] of l.names.entries())
        if (l.trainable[i]) readInto(g.get(name)!, grads, l.offsets[i]!);
      losses[2 * index] = loss.dataSync()[0]!;
      losses[2 * index + 1] = weight;
      if (perSample) port.postMessage({ type: 'samples', perSample });
    } finally {
      tf.dispose([loss, ...g.values()]);
    }
  };
  port.on(
    'message',
    (m: { type: string; seq: number; all: boolean; inputs: StepInputs; opts: LossOptions }) => {
      if (m.type !== 'step') return;
      try {
        step(m);
        Atomics.store(control, word, m.seq);
      } catch (e) {
        port.postMessage({ type: 'error', message: (e as Error).message });
        Atomics.store(control, word, -m.seq);
      }
      Atomics.notify(control, word);
    },
  );
  port.postMessage({ type: 'ready' });
} catch (e) {
  port.postMessage({ type: 'error', message: (e as Error).message });
}
