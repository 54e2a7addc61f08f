/**
 * oneDNN's products through the optional `vla-onednn` binding (packages/onednn): bfloat16 operands with
 * float32 accumulation, as PyTorch runs CPU bf16 and openpi trains π0. The operands are rounded to
 * bf16 (to nearest even) inside the binding; norms, softmax, the loss, the optimizer and the master
 * weights stay float32 around them. Debian's OpenBLAS 0.3.21 has no sbgemm, so oneDNN is the way to
 * this CPU's AVX512-BF16 instructions.
 */
import { createRequire } from 'node:module';
import { NO_TRANS, type Sgemm, TRANS } from './gemm.js';

export const ONEDNN_PACKAGE = 'vla-onednn';

export interface OneDnn {
  /** bf16 operands, fp32 accumulation and output; cblas_sgemm's row-major arguments. */
  sgemmBf16: Sgemm;
  /** oneDNN's version and the instruction set it runs, e.g. `oneDNN 2.6.3, avx512_core_bf16`. */
  describe: string;
}

interface Binding {
  sgemmBf16: Sgemm;
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
  return { sgemmBf16: binding.sgemmBf16, describe: `oneDNN ${info.version}, ${info.isa}` };
}
