/**
 * Fused element-wise kernels for the WASM backend: RMSNorm forward and backward, GELU's backward, AdamW
 * and the weights' EMA, each one pass of WASM SIMD over TensorFlow.js's own heap where tfjs ran 3–15
 * kernels, each a pass over memory and an engine op of its own. (GELU's forward stays on WASM's own
 * Sigmoid, which computes e^x faster than a series here did: 7.1 against 10.1 ms at [4736, 1024].) The kernels are written in WebAssembly
 * text (fused.wat), assembled here with wabt when the pack installs, and instantiated against the
 * backend's memory, so they read and write tensors in place.
 *
 *   VlaRmsNorm      x [R, C], scale [C] or none  → y [R, C], r [R, 1] (1/rms per row, for the gradient)
 *   VlaRmsNormGrad  dy, x, r, scale              → dx [R, C], dscale [C]
 *   VlaGeluGrad     x, s = σ(1.702x), dy          → dx of GELU's sigmoid form y = x·s
 *   VlaAdamW        p, g, m, v                   → p', m', v' (one AdamW step; new tensors, see optimizer.ts)
 *   VlaEma          ema, p                       → ema'
 * and, called directly on tensor memory, sumOfSquares(t) (the global gradient norm) and softmaxGrad (the
 * attention kernel's backward). The native sampler (model/native-sampler.ts) instantiates the same
 * module against a shared memory of its own and calls rms_norm, x_sigmoid (GELU's and SiLU's forward),
 * softmax_rows, add_to and add_rows there, without TensorFlow.js.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { KernelBackend, KernelFunc, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { heapOffset, type WasmBackendInternals } from './matmul.js';

export const RMS_NORM = 'VlaRmsNorm';
export const RMS_NORM_GRAD = 'VlaRmsNormGrad';
export const GELU_GRAD = 'VlaGeluGrad';
export const ADAMW = 'VlaAdamW';
export const EMA = 'VlaEma';
export const FUSED_KERNELS = [RMS_NORM, RMS_NORM_GRAD, GELU_GRAD, ADAMW, EMA] as const;

/** VlaAdamW's attributes: the step's constants (the optimizer computes them once per step). */
export interface AdamWAttrs {
  clip: number;
  b1: number;
  b2: number;
  /** Bias corrections 1 − b1^t and 1 − b2^t. */
  c1: number;
  c2: number;
  eps: number;
  weightDecay: number;
  lr: number;
}

/** The ε under the root: the model's RMSNorm (Gemma's). */
export const RMS_EPS = 1e-6;

export interface FusedExports {
  gelu_grad(x: number, s: number, dy: number, dx: number, n: number): void;
  rms_norm(x: number, scale: number, y: number, r: number, rows: number, cols: number, eps: number): void;
  rms_norm_grad(
    dy: number,
    x: number,
    r: number,
    scale: number,
    dx: number,
    ds: number,
    rows: number,
    cols: number,
  ): void;
  adamw(
    p: number,
    g: number,
    m: number,
    v: number,
    po: number,
    mo: number,
    vo: number,
    n: number,
    clip: number,
    b1: number,
    nb1: number,
    b2: number,
    nb2: number,
    c1: number,
    c2: number,
    eps: number,
    wd: number,
    lr: number,
  ): void;
  ema(e: number, p: number, out: number, n: number, decay: number, nd: number): void;
  sum_squares(x: number, n: number): number;
  softmax_grad(p: number, dp: number, ds: number, rows: number, cols: number): void;
  /** y = x·σ(a·x) over n floats (GELU's sigmoid form with a = 1.702, SiLU with a = 1). */
  x_sigmoid(x: number, y: number, n: number, a: number): void;
  /** Softmax in place over `rows` rows of `cols` floats, `ld` floats apart. */
  softmax_rows(p: number, rows: number, cols: number, ld: number): void;
  /** x += a over n floats. */
  add_to(x: number, a: number, n: number): void;
  /** x[r, :] += a[r·lda, :]·g over `rows` rows of `cols` floats (g = 0: a gain of 1; lda = 0: one vector on every row). */
  add_rows(x: number, a: number, lda: number, g: number, rows: number, cols: number): void;
}

const require = createRequire(import.meta.url);

/** The parts of the WebAssembly API used here (this project's TypeScript lib has no DOM types). */
interface WasmMemory {
  buffer: ArrayBuffer | SharedArrayBuffer;
}
const WA = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (module: object, imports: object) => { exports: unknown };
    };
  }
).WebAssembly;

/** The backend's heap as a WasmMemory (the threaded build's is shared), or null. */
function heapOf(backend: KernelBackend): WasmMemory | null {
  const wasm = (backend as unknown as WasmBackendInternals).wasm;
  return wasm?.wasmMemory ?? wasm?.asm?.memory ?? null;
}

interface WabtModule {
  toBinary(o: object): { buffer: Uint8Array };
  destroy(): void;
}
interface Wabt {
  parseWat(name: string, text: string, features: object): WabtModule;
}
let wabt: Promise<Wabt> | null = null;
/** The assembled module, for a plain heap and for a shared one: assembled once per process each. */
const modules = new Map<boolean, object>();
/** Instances by heap: setting the backend up again (every command step, every benchmark row) reuses one. */
const instances = new WeakMap<WasmMemory, FusedExports>();

async function assemble(shared: boolean): Promise<object> {
  let mod = modules.get(shared);
  if (mod) return mod;
  wabt ??= (require('wabt') as () => Promise<Wabt>)();
  const assembler = await wabt;
  const text = readFileSync(new URL('./fused.wat', import.meta.url), 'utf8').replace(
    ';; import-memory',
    `(import "env" "memory" (memory 1${shared ? ' 65536 shared' : ''}))`,
  );
  const parsed = assembler.parseWat('fused.wat', text, { simd: true, bulk_memory: true, threads: shared });
  try {
    mod = new WA.Module(parsed.toBinary({}).buffer);
  } finally {
    parsed.destroy();
  }
  modules.set(shared, mod);
  return mod;
}

/** Assembles fused.wat against `memory`; returns the kernels' exports, or why not (never throws). */
export async function loadFused(memory: WasmMemory): Promise<FusedExports | { error: string }> {
  try {
    const known = instances.get(memory);
    if (known) return known;
    const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
    const instance = new WA.Instance(await assemble(shared), { env: { memory } });
    const exports = instance.exports as unknown as FusedExports;
    instances.set(memory, exports);
    return exports;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (err?.code === 'MODULE_NOT_FOUND') return { error: 'wabt not installed' };
    return { error: `fused kernels: ${(err?.message ?? String(e)).replace(/\s+/g, ' ').slice(0, 300)}` };
  }
}

function kernels(k: FusedExports): Record<(typeof FUSED_KERNELS)[number], KernelFunc> {
  const ptr = heapOffset;
  const float32 = (inputs: NamedTensorInfoMap, name: string) => {
    for (const [n, t] of Object.entries(inputs)) {
      if (t && t.dtype !== 'float32') throw new Error(`${name}: ${n} is ${t.dtype}, expected float32`);
    }
  };
  // A size that does not fit would read or write past the tensor in the shared heap: refused, named.
  const sized = (kernel: string, n: number, what: string, inputs: Record<string, TensorInfo | undefined>) => {
    for (const [name, t] of Object.entries(inputs))
      if (t && tf.util.sizeFromShape(t.shape) !== n)
        throw new Error(`${kernel}: ${name} is [${t.shape}], expected ${n} values (${what})`);
  };
  const rowsCols = (x: TensorInfo) => {
    const cols = x.shape.at(-1)!;
    return [cols === 0 ? 0 : tf.util.sizeFromShape(x.shape) / cols, cols] as const;
  };
  return {
    [RMS_NORM]: ({ inputs, backend }) => {
      float32(inputs, RMS_NORM);
      const { x, scale } = inputs as { x: TensorInfo; scale?: TensorInfo };
      const b = backend as unknown as WasmBackendInternals;
      const [rows, cols] = rowsCols(x);
      sized(RMS_NORM, cols, `x's last axis, [${x.shape}]`, { scale });
      const y = b.makeOutput(x.shape, 'float32');
      const r = b.makeOutput([rows, 1], 'float32');
      // Without a scale, a gain of 1 (the kernel reads no scale at pointer 0).
      k.rms_norm(ptr(b, x), scale ? ptr(b, scale) : 0, ptr(b, y), ptr(b, r), rows, cols, RMS_EPS);
      return [y, r];
    },
    [RMS_NORM_GRAD]: ({ inputs, backend }) => {
      float32(inputs, RMS_NORM_GRAD);
      const { dy, x, r, scale } = inputs as {
        dy: TensorInfo;
        x: TensorInfo;
        r: TensorInfo;
        scale: TensorInfo;
      };
      const b = backend as unknown as WasmBackendInternals;
      const [rows, cols] = rowsCols(x);
      sized(RMS_NORM_GRAD, rows * cols, `x's, [${x.shape}]`, { dy });
      sized(RMS_NORM_GRAD, rows, 'one per row of x', { r });
      sized(RMS_NORM_GRAD, cols, "x's last axis", { scale });
      const dx = b.makeOutput(x.shape, 'float32');
      const ds = b.makeOutput(scale.shape, 'float32');
      k.rms_norm_grad(ptr(b, dy), ptr(b, x), ptr(b, r), ptr(b, scale), ptr(b, dx), ptr(b, ds), rows, cols);
      return [dx, ds];
    },
    [ADAMW]: ({ inputs, backend, attrs }) => {
      float32(inputs, ADAMW);
      const { p, g, m, v } = inputs as { p: TensorInfo; g: TensorInfo; m: TensorInfo; v: TensorInfo };
      const a = attrs as unknown as AdamWAttrs;
      const n = tf.util.sizeFromShape(p.shape);
      sized(ADAMW, n, `the weight's, [${p.shape}]`, { g, m, v });
      const b = backend as unknown as WasmBackendInternals;
      const out = [p, m, v].map((t) => b.makeOutput(t.shape, 'float32'));
      const [po, mo, vo] = out.map((t) => ptr(b, t)) as [number, number, number];
      k.adamw(
        ptr(b, p),
        ptr(b, g),
        ptr(b, m),
        ptr(b, v),
        po,
        mo,
        vo,
        n,
        a.clip,
        a.b1,
        1 - a.b1,
        a.b2,
        1 - a.b2,
        a.c1,
        a.c2,
        a.eps,
        a.weightDecay,
        a.lr,
      );
      return out;
    },
    [EMA]: ({ inputs, backend, attrs }) => {
      float32(inputs, EMA);
      const { ema, p } = inputs as { ema: TensorInfo; p: TensorInfo };
      const decay = (attrs as { decay: number }).decay;
      sized(EMA, tf.util.sizeFromShape(ema.shape), `the EMA's, [${ema.shape}]`, { p });
      const b = backend as unknown as WasmBackendInternals;
      const out = b.makeOutput(ema.shape, 'float32');
      k.ema(ptr(b, ema), ptr(b, p), ptr(b, out), tf.util.sizeFromShape(ema.shape), decay, 1 - decay);
      return out;
    },
    [GELU_GRAD]: ({ inputs, backend }) => {
      float32(inputs, GELU_GRAD);
      const { x, s, dy } = inputs as { x: TensorInfo; s: TensorInfo; dy: TensorInfo };
      sized(GELU_GRAD, tf.util.sizeFromShape(x.shape), `x's, [${x.shape}]`, { s, dy });
      const b = backend as unknown as WasmBackendInternals;
      const dx = b.makeOutput(x.shape, 'float32');
      k.gelu_grad(ptr(b, x), ptr(b, s), ptr(b, dy), ptr(b, dx), tf.util.sizeFromShape(x.shape));
      return dx;
    },
  };
}

let active: FusedExports | null = null;

/** Σ t² of a float32 tensor on the wasm backend, read in place (float64 sums); null without the kernels. */
export function sumOfSquares(t: tf.Tensor): number | null {
  if (!active || t.dtype !== 'float32' || tf.getBackend() !== 'wasm' || !fusedActive()) return null;
  const b = tf.backend() as unknown as WasmBackendInternals;
  return active.sum_squares(heapOffset(b, t), t.size);
}

/**
 * The softmax's gradient ds = p·(dp − Σ_row dp·p) over rows of [rows, cols] tensors on the wasm backend,
 * in one pass (the attention kernel's backward); null where the fused kernels are not loaded or the
 * tensors are not on that backend, and the caller runs the host's own kernels.
 */
export function softmaxGrad(backend: KernelBackend, p: TensorInfo, dp: TensorInfo): TensorInfo | null {
  if (!active || backend !== tf.findBackend('wasm')) return null;
  if (dp.shape.join() !== p.shape.join())
    throw new Error(`softmaxGrad: dp is [${dp.shape}], expected [${p.shape}]`);
  const b = backend as unknown as WasmBackendInternals;
  const ds = b.makeOutput(p.shape, 'float32');
  const cols = p.shape.at(-1)!;
  const at = (t: TensorInfo) => heapOffset(b, t);
  active.softmax_grad(at(p), at(dp), at(ds), cols === 0 ? 0 : tf.util.sizeFromShape(p.shape) / cols, cols);
  return ds;
}

/** Registers the kernels on the wasm backend; returns why not, or null. */
export async function installFused(): Promise<string | null> {
  const backend = tf.findBackend('wasm');
  const memory = backend ? heapOf(backend) : null;
  if (!memory) return 'the WASM heap is not reachable';
  const loaded = await loadFused(memory);
  if ('error' in loaded) return loaded.error;
  removeFused();
  active = loaded;
  for (const [kernelName, kernelFunc] of Object.entries(kernels(loaded))) {
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
  }
  return null;
}

export function removeFused(): void {
  active = null;
  for (const name of FUSED_KERNELS) if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
}

/** Whether the active backend has the fused kernels. */
export function fusedActive(): boolean {
  return Boolean(tf.getKernel(RMS_NORM, tf.getBackend()));
}
