'use strict';
// Throws when the addon was not built (no libdnnl-dev at install): callers fall back to other kernels.
const native = require('./build/Release/vla_onednn.node');

module.exports = {
  /** fp32 row-major GEMM (dnnl_sgemm); nblas's sgemm arguments: (transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc). */
  sgemm: native.sgemm,
  /** Same arguments; A and B rounded to bf16 (RNE), products accumulated in fp32 (dnnl_gemm_bf16bf16f32). */
  sgemmBf16: native.sgemmBf16,
  /** Same, with B given as bf16 bits (a Uint16Array from toBf16): a weight rounded once, not per product. */
  sgemmBf16B: native.sgemmBf16B,
  /** bf16 bit patterns of src (RNE), written into dst (a new Uint16Array when left out); returns dst. */
  toBf16: (src, dst) => native.toBf16(src, dst === undefined ? new Uint16Array(src.length) : dst),
  setNumThreads: native.setNumThreads,
  getNumThreads: native.getNumThreads,
  info: native.info,
  NO_TRANS: 111,
  TRANS: 112,
};
