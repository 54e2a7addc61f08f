/** The one signature every product of the kernel pack goes through, whichever library runs it. */

/** CBLAS transpose flags (row-major calls). */
export const NO_TRANS = 111;
export const TRANS = 112;

/** `cblas_sgemm(RowMajor, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)`, B of type `B`. */
type Product<B> = (
  transA: number,
  transB: number,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: B,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

export type Sgemm = Product<Float32Array>;

/** The same with B given as bf16 bits (a weight rounded to bf16 once, `ldb` counted in them). */
export type SgemmBf16B = Product<Uint16Array>;
