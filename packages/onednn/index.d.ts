/** CBLAS_TRANSPOSE: 111 NoTrans, 112 Trans (113 ConjTrans is taken as Trans). */
export type Trans = 111 | 112 | 113;

/**
 * Row-major `C = alpha·op(A)·op(B) + beta·C`, with nblas's `sgemm` arguments (cblas_sgemm with
 * CblasRowMajor, less the layout argument). K = 0 or alpha = 0 scales C by beta (beta = 0 clears it).
 */
type Product<B> = (
  transA: Trans,
  transB: Trans,
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

export interface OneDnnInfo {
  /** oneDNN library version, e.g. `2.6.3`. */
  version: string;
  /** oneDNN's git hash. */
  commit: string;
  /** oneDNN's CPU threading runtime: `openmp` for Debian's build. */
  cpuRuntime: string;
  /** The instruction set oneDNN dispatches to (dnnl_get_effective_cpu_isa), e.g. `avx512_core_bf16`. */
  isa: string;
  /** CPUID (and the OS) say AVX512-BF16 is usable. */
  avx512Bf16: boolean;
  /** CPUID (and the OS) say AMX-BF16 is usable. */
  amxBf16: boolean;
  /** Either of the two: bf16 products run on bf16 hardware rather than being emulated. */
  bf16Hardware: boolean;
  /** OpenMP threads of the calling thread (getNumThreads()). */
  threads: number;
}

/** fp32 GEMM through dnnl_sgemm. */
export declare const sgemm: Sgemm;
/** A and B rounded fp32 → bf16 (round to nearest even), fp32 accumulation (dnnl_gemm_bf16bf16f32). */
export declare const sgemmBf16: Sgemm;
/**
 * `sgemmBf16` with B given as bf16 bits (the rounding `toBf16` applies) and `ldb` counted in them: a
 * weight rounded once rather than on every product that reads it. A is rounded per call as before.
 */
export declare const sgemmBf16B: Product<Uint16Array>;
/** bf16 bit patterns of `src` (the rounding sgemmBf16 applies), into `dst` or a new array; returns it. */
export declare function toBf16(src: Float32Array, dst?: Uint16Array): Uint16Array;
/** OpenMP threads for products started from the calling thread (each worker thread has its own). */
export declare function setNumThreads(n: number): void;
export declare function getNumThreads(): number;
export declare function info(): OneDnnInfo;
export declare const NO_TRANS: 111;
export declare const TRANS: 112;
