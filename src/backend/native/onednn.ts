/**
 * oneDNN's products through the optional `vla-onednn` binding (packages/onednn): bfloat16 operands with
 * float32 accumulation, as PyTorch runs CPU bf16 and openpi trains π0. The operands are rounded to
 * bf16 (to nearest even) inside the binding; norms, softmax, the loss, the optimizer and the master
 * weights stay float32 around them. Debian's OpenBLAS 0.3.21 has no sbgemm, so oneDNN is the way to
 * this CPU's AVX512-BF16 instructions.
 */
import { createRequire } from 'node:module';
import { NO_TRANS, type Sgemm, type SgemmBf16B, TRANS } from './gemm.js';

export const ONEDNN_PACKAGE = 'vla-onednn';

export interface OneDnn {
  /** bf16 operands, fp32 accumulation and output; cblas_sgemm's row-major arguments. */
  sgemmBf16: Sgemm;
  /**
   * `sgemmBf16` with B given as bf16 bits (`toBf16`'s, `ldb` counted in them): for a weight rounded once
   * and read by many products (the native sampler's), where rounding B each call was most of the cost.
   */
  sgemmBf16B: SgemmBf16B;
  /** fp32 → bf16 bits, rounded as `sgemmBf16` rounds its operands. */
  toBf16(src: Float32Array): Uint16Array;
  /**
   * oneDNN's version and the instruction set it runs, e.g. `oneDNN 2.6.3, avx512_core_bf16`, and a
   * warning where bf16 products measured slower than float32 ones here (see bf16Rate).
   */
  describe: string;
  /** bf16 products' rate over float32's on this CPU, measured once at load (bf16Rate). */
  rate: number;
}

interface Binding {
  sgemm: Sgemm;
  sgemmBf16: Sgemm;
  sgemmBf16B: SgemmBf16B;
  toBf16(src: Float32Array): Uint16Array;
  setNumThreads(n: number): void;
  info(): { version: string; bf16Hardware: boolean; isa: string };
}

const require = createRequire(import.meta.url);

/**
 * The bf16 products, or a one-line reason why they cannot run here: the binding is not built (no
 * libdnnl-dev at install), or the CPU has no bf16 instructions (oneDNN would emulate them, slower than
 * float32). `threads` is this thread's OpenMP team size for oneDNN, as OpenBLAS's count is for it.
 */
export function loadOneDnn(
  threads: number,
  load: (pkg: string) => unknown = require,
): OneDnn | { error: string } {
  let binding: Binding;
  try {
    binding = load(ONEDNN_PACKAGE) as Binding;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return {
      error:
        err.code === 'MODULE_NOT_FOUND'
          ? `${ONEDNN_PACKAGE} not built (apt-get install libdnnl-dev, then npm ci)`
          : `${ONEDNN_PACKAGE}: ${(err.message ?? String(e)).split('\n')[0]}`,
    };
  }
  const info = binding.info();
  if (!info.bf16Hardware)
    return { error: `this CPU has no AVX512-BF16 or AMX-BF16 (oneDNN ${info.version}, ${info.isa})` };
  binding.setNumThreads(threads);
  // [[1,2],[3,4]]·[[1,2],[3,4]]ᵀ in bf16 is exact: a binding that loads but computes wrong is refused.
  const a = new Float32Array([1, 2, 3, 4]);
  const c = new Float32Array(4);
  binding.sgemmBf16(NO_TRANS, TRANS, 2, 2, 2, 1, a, 2, a, 2, 0, c, 2);
  if (c.join() !== '5,11,11,25')
    return { error: `${ONEDNN_PACKAGE}: bf16 self-check gave ${c.join()}, expected 5,11,11,25` };
  const rate = bf16Rate(binding);
  const slower =
    rate < 0.95
      ? `; bf16 products measured at ${rate.toFixed(2)}× float32's rate on this CPU at start-up (its bf16 dot products issue no faster than float32 FMAs without AMX, or other work shared the core): slower, not faster`
      : '';
  return {
    sgemmBf16: binding.sgemmBf16,
    sgemmBf16B: binding.sgemmBf16B,
    toBf16: (src) => binding.toBf16(src),
    describe: `oneDNN ${info.version}, ${info.isa}${slower}`,
    rate,
  };
}

/**
 * bf16 products' rate over float32's, both on oneDNN, at a 384³ product (the size of a training batch's
 * layer): each side's fastest of 9, timed in turn after a warm-up. The fastest, not the median: a load
 * beside it (the other replica of a data-parallel run starting) only ever slows a product, and medians
 * beside a training run read anywhere from 0.2 to 1.8 on a CPU whose quiet rate is 1.9. About 15 ms once.
 * AVX512-BF16 doubles the rate where its dot products issue as often as float32 FMAs (AMD Zen 4: 1.9–2.0×
 * measured), and gains nothing where they issue at half that rate: this project's Intel Xeon VM (Emerald
 * Rapids, AMX hidden) measured 0.6×. Reported, never acted on: the precision is what the config asked,
 * so a run's numbers do not depend on a timing.
 */
function bf16Rate(binding: Binding): number {
  const n = 384;
  const a = new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const c = new Float32Array(n * n);
  const time = (gemm: Sgemm) => {
    const t0 = performance.now();
    gemm(NO_TRANS, NO_TRANS, n, n, n, 1, a, n, a, n, 0, c, n);
    return performance.now() - t0;
  };
  time(binding.sgemm);
  time(binding.sgemmBf16);
  let [f32, bf16] = [Infinity, Infinity];
  for (let r = 0; r < 9; r++) {
    f32 = Math.min(f32, time(binding.sgemm));
    bf16 = Math.min(bf16, time(binding.sgemmBf16));
  }
  return f32 / bf16;
}
