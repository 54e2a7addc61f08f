// vla-onednn: row-major GEMM on oneDNN (Debian libdnnl-dev 2.6), as an N-API addon.
//
//   C = alpha * op(A) * op(B) + beta * C
//
// with nblas's sgemm argument order, i.e. cblas_sgemm(CblasRowMajor, ...) without the layout argument:
//   sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
// transA/transB are the CBLAS enums (111 NoTrans, 112 Trans; 113 ConjTrans = Trans for real data).
//
//   sgemm      fp32 through dnnl_sgemm.
//   sgemmBf16  A and B rounded fp32 -> bf16 (round to nearest even) here, then
//              dnnl_gemm_bf16bf16f32: bf16 products, fp32 accumulation and fp32 C.
//   sgemmBf16B the same with B given as bf16 bits (a Uint16Array from toBf16): a weight rounded once,
//              not on every product that reads it.
//
// The addon is loaded by several worker threads at once: it keeps no process-wide mutable state. The
// bf16 scratch buffers are thread_local, the CPU features are detected once into a function-local
// constant, and the module is registered with NAPI_MODULE_INIT (context-aware, so every worker's
// require() initialises it afresh).
#include <node_api.h>

#include <cpuid.h>
#include <dnnl.h>
#include <dnnl_debug.h>
#include <immintrin.h>
#include <omp.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

// Exported by libdnnl.so.2 (2.x) but not declared in its public headers.
extern "C" dnnl_status_t DNNL_API dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M,
                                                        dnnl_dim_t N, dnnl_dim_t K, float alpha,
                                                        const uint16_t *A, dnnl_dim_t lda,
                                                        const uint16_t *B, dnnl_dim_t ldb, float beta,
                                                        float *C, dnnl_dim_t ldc);

// ------------------------------------------------------------------------------------ CPU features
struct CpuFeatures {
  bool avx512bf16;  // AVX512_BF16 (VCVTNEPS2BF16, VDPBF16PS) usable: CPU has it and the OS saves ZMM state
  bool amxbf16;     // AMX-BF16 (tile) usable as far as CPUID/XCR0 say (Linux also needs a per-process permit,
                    // which oneDNN requests itself)
};

static CpuFeatures detect_cpu() {
  CpuFeatures f{false, false};
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  uint64_t xcr0 = 0;
  if (c & (1u << 27)) {  // OSXSAVE
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = ((uint64_t)hi << 32) | lo;
  }
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;                   // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);      // XTILECFG, XTILEDATA
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned max_sub = a;
  const bool avx512f = b & (1u << 16), avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  bool avx512_bf16 = false;
  if (max_sub >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    avx512_bf16 = a & (1u << 5);
  }
  f.avx512bf16 = os_avx512 && avx512f && avx512bw && avx512vl && avx512_bf16;
  f.amxbf16 = os_amx && amx_tile && amx_bf16;
  return f;
}

// Detected once per process (thread-safe static initialisation), read-only afterwards.
static const CpuFeatures &cpu() {
  static const CpuFeatures features = detect_cpu();
  return features;
}

// ------------------------------------------------------------------------- fp32 -> bf16 (RNE)
static inline uint16_t f2bf(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);  // NaN: keep it a (quiet) NaN
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) static void cvt_row_scalar(const float *src,
                                                                                       uint16_t *dst,
                                                                                       int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = f2bf(src[i]);
}

// VCVTNE2PS2BF16 rounds to nearest even like f2bf, and quiets NaNs the same way, but reads denormal
// inputs as zero: blocks holding a nonzero denormal are redone with f2bf, so both paths agree bit for bit.
__attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw"))) static void cvt_row_avx512bf16(
    const float *src, uint16_t *dst, int64_t n) {
  const __m512 tiny = _mm512_set1_ps(FLT_MIN), zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_loadu_ps(src + i), hi = _mm512_loadu_ps(src + i + 16);
    const __mmask16 dlo = _mm512_cmp_ps_mask(_mm512_abs_ps(lo), tiny, _CMP_LT_OQ) &
                          _mm512_cmp_ps_mask(lo, zero, _CMP_NEQ_UQ);
    const __mmask16 dhi = _mm512_cmp_ps_mask(_mm512_abs_ps(hi), tiny, _CMP_LT_OQ) &
                          _mm512_cmp_ps_mask(hi, zero, _CMP_NEQ_UQ);
    if (__builtin_expect((dlo | dhi) != 0, 0)) {
      for (int j = 0; j < 32; j++) dst[i + j] = f2bf(src[i + j]);
      continue;
    }
    const __m512bh v = _mm512_cvtne2ps_pbh(hi, lo);
    _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
  }
  for (; i < n; i++) dst[i] = f2bf(src[i]);
}

static void cvt_row(const float *src, uint16_t *dst, int64_t n) {
  if (cpu().avx512bf16) cvt_row_avx512bf16(src, dst, n);
  else cvt_row_scalar(src, dst, n);
}

// A rows x cols row-major matrix with leading dimension ld -> packed bf16 (leading dimension cols).
// Parallel on the calling thread's OpenMP team (the one oneDNN uses) above 64K elements.
static void cvt_mat(const float *src, int64_t rows, int64_t cols, int64_t ld, uint16_t *dst) {
  const int64_t CH = 1 << 14, total = rows * cols;
  const bool par = total >= (1 << 16) && omp_get_max_threads() > 1;
  if (ld == cols || rows == 1) {
    const int64_t nch = (total + CH - 1) / CH;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t c = 0; c < nch; c++) {
      const int64_t b = c * CH, n = (total - b < CH) ? total - b : CH;
      cvt_row(src + b, dst + b, n);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < rows; r++) cvt_row(src + r * ld, dst + r * cols, cols);
}

// Grow-only conversion buffers, one pair per calling thread (the JS main thread and each worker).
struct Scratch {
  std::vector<uint16_t> a, b;
};
static thread_local Scratch t_scratch;

// C = beta * C with BLAS semantics (beta == 0 overwrites, NaN/Inf included). For K == 0 or alpha == 0,
// which oneDNN 2.6 gets wrong (dnnl_sgemm rejects an empty A; the bf16 gemm ignores beta).
static void scale_c(float *C, int64_t M, int64_t N, int64_t ldc, float beta) {
  for (int64_t i = 0; i < M; i++) {
    float *c = C + i * ldc;
    if (beta == 0.f) std::memset(c, 0, N * sizeof(float));
    else if (beta != 1.f)
      for (int64_t j = 0; j < N; j++) c[j] *= beta;
  }
}

// ------------------------------------------------------------------------------- N-API helpers
static napi_value throw_type(napi_env env, const std::string &msg) {
  napi_throw_type_error(env, nullptr, msg.c_str());
  return nullptr;
}
static napi_value throw_range(napi_env env, const std::string &msg) {
  napi_throw_range_error(env, nullptr, msg.c_str());
  return nullptr;
}
static napi_value throw_error(napi_env env, const std::string &msg) {
  napi_throw_error(env, nullptr, msg.c_str());
  return nullptr;
}

static bool get_number(napi_env env, napi_value v, double *out) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && t == napi_number && napi_get_value_double(env, v, out) == napi_ok;
}

// A non-negative integer (a dimension or leading dimension).
static bool get_dim(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (!get_number(env, v, &d) || !(d >= 0) || d > 9007199254740991.0 || d != std::floor(d)) return false;
  *out = (int64_t)d;
  return true;
}

// CBLAS_TRANSPOSE: 111 NoTrans, 112 Trans, 113 ConjTrans (== Trans for real matrices).
static bool get_trans(napi_env env, napi_value v, bool *out) {
  double d;
  if (!get_number(env, v, &d)) return false;
  if (d == 111) *out = false;
  else if (d == 112 || d == 113) *out = true;
  else return false;
  return true;
}

// A typed array of type `want`: its data (already offset by the view's byteOffset) and element count.
static bool get_typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type t;
  if (napi_get_typedarray_info(env, v, &t, len, data, nullptr, nullptr) != napi_ok) return false;
  return t == want;
}

static bool get_f32(napi_env env, napi_value v, float **data, size_t *len) {
  return get_typed(env, v, napi_float32_array, (void **)data, len);
}

static bool get_u16(napi_env env, napi_value v, uint16_t **data, size_t *len) {
  return get_typed(env, v, napi_uint16_array, (void **)data, len);
}

// ---------------------------------------------------------------------------------------- GEMM
// Which operands are rounded to bf16 here: none (fp32), A and B, or A alone (B came as bf16 bits).
enum class Mode { F32, BF16, BF16_B_GIVEN };

static napi_value gemm(napi_env env, napi_callback_info info, Mode mode) {
  const bool bf16 = mode != Mode::F32;
  const char *name = mode == Mode::F32 ? "sgemm" : mode == Mode::BF16 ? "sgemmBf16" : "sgemmBf16B";
  size_t argc = 13;
  napi_value argv[13];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  if (argc < 13)
    return throw_type(env, std::string(name) + "(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc): " +
                               "13 arguments expected, got " + std::to_string(argc));
  bool ta, tb;
  if (!get_trans(env, argv[0], &ta) || !get_trans(env, argv[1], &tb))
    return throw_range(env, std::string(name) + ": transA/transB must be 111 (NoTrans) or 112 (Trans)");
  int64_t M, N, K, lda, ldb, ldc;
  if (!get_dim(env, argv[2], &M) || !get_dim(env, argv[3], &N) || !get_dim(env, argv[4], &K) ||
      !get_dim(env, argv[7], &lda) || !get_dim(env, argv[9], &ldb) || !get_dim(env, argv[12], &ldc))
    return throw_type(env, std::string(name) + ": M, N, K, lda, ldb, ldc must be non-negative integers");
  double alpha_d, beta_d;
  if (!get_number(env, argv[5], &alpha_d) || !get_number(env, argv[10], &beta_d))
    return throw_type(env, std::string(name) + ": alpha and beta must be numbers");
  float *A, *B = nullptr, *C;
  uint16_t *Bh = nullptr;
  size_t la, lb, lc;
  if (mode == Mode::BF16_B_GIVEN) {
    if (!get_f32(env, argv[6], &A, &la) || !get_u16(env, argv[8], &Bh, &lb) || !get_f32(env, argv[11], &C, &lc))
      return throw_type(env, std::string(name) + ": A and C must be Float32Arrays, B a Uint16Array of bf16 bits");
  } else if (!get_f32(env, argv[6], &A, &la) || !get_f32(env, argv[8], &B, &lb) ||
             !get_f32(env, argv[11], &C, &lc))
    return throw_type(env, std::string(name) + ": A, B and C must be Float32Arrays");

  // Stored (row-major) shapes: op(A) is M x K, op(B) is K x N.
  const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  if (lda < (ac > 1 ? ac : 1) || ldb < (bc > 1 ? bc : 1) || ldc < (N > 1 ? N : 1))
    return throw_range(env, std::string(name) + ": leading dimension smaller than the row length");
  if (M == 0 || N == 0) return nullptr;
  if ((int64_t)lc < (M - 1) * ldc + N ||
      (K > 0 && ((int64_t)la < (ar - 1) * lda + ac || (int64_t)lb < (br - 1) * ldb + bc)))
    return throw_range(env, std::string(name) + ": array too small for M/N/K and its leading dimension");

  const float alpha = (float)alpha_d, beta = (float)beta_d;
  if (K == 0 || alpha == 0.f) {
    scale_c(C, M, N, ldc, beta);
    return nullptr;
  }
  const char tA = ta ? 'T' : 'N', tB = tb ? 'T' : 'N';
  dnnl_status_t st;
  try {
    if (!bf16) {
      st = dnnl_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    } else {
      Scratch &s = t_scratch;
      if ((int64_t)s.a.size() < ar * ac) s.a.resize(ar * ac);
      cvt_mat(A, ar, ac, lda, s.a.data());
      if (Bh) {
        st = dnnl_gemm_bf16bf16f32(tA, tB, M, N, K, alpha, s.a.data(), ac, Bh, ldb, beta, C, ldc);
      } else {
        if ((int64_t)s.b.size() < br * bc) s.b.resize(br * bc);
        cvt_mat(B, br, bc, ldb, s.b.data());
        st = dnnl_gemm_bf16bf16f32(tA, tB, M, N, K, alpha, s.a.data(), ac, s.b.data(), bc, beta, C, ldc);
      }
    }
  } catch (const std::exception &e) {  // std::bad_alloc from the scratch buffers
    return throw_error(env, std::string(name) + ": " + e.what());
  }
  if (st != dnnl_success)
    return throw_error(env, std::string(name) + ": oneDNN returned " + dnnl_status2str(st) + " (" +
                                std::to_string((int)st) + ")");
  return nullptr;
}

static napi_value Sgemm(napi_env env, napi_callback_info info) { return gemm(env, info, Mode::F32); }
static napi_value SgemmBf16(napi_env env, napi_callback_info info) { return gemm(env, info, Mode::BF16); }
static napi_value SgemmBf16B(napi_env env, napi_callback_info info) { return gemm(env, info, Mode::BF16_B_GIVEN); }

// toBf16(src: Float32Array, dst: Uint16Array): dst[i] = bf16 bits of src[i] (RNE), the same conversion
// sgemmBf16 applies to A and B.
static napi_value ToBf16(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  float *src;
  uint16_t *dst;
  size_t n, m;
  if (argc < 2 || !get_f32(env, argv[0], &src, &n) || !get_u16(env, argv[1], &dst, &m))
    return throw_type(env, "toBf16(src: Float32Array, dst: Uint16Array)");
  if (m < n) return throw_range(env, "toBf16: dst shorter than src");
  cvt_mat(src, 1, (int64_t)n, (int64_t)n, dst);
  return argv[1];
}

// setNumThreads(n): OpenMP threads for products started from the calling JS thread (each worker thread
// has its own setting; a new thread starts from OMP_NUM_THREADS, or the number of cores).
static napi_value SetNumThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  int64_t n;
  if (argc < 1 || !get_dim(env, argv[0], &n) || n < 1 || n > 4096)
    return throw_range(env, "setNumThreads(n): n must be an integer >= 1");
  omp_set_num_threads((int)n);
  return nullptr;
}

static napi_value GetNumThreads(napi_env env, napi_callback_info) {
  napi_value r;
  napi_create_int32(env, omp_get_max_threads(), &r);
  return r;
}

static void set_prop(napi_env env, napi_value obj, const char *key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
}
static void set_str(napi_env env, napi_value obj, const char *key, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  set_prop(env, obj, key, v);
}
static void set_bool(napi_env env, napi_value obj, const char *key, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  set_prop(env, obj, key, v);
}

static const char *runtime_name(unsigned r) {
  switch (r) {
    case DNNL_RUNTIME_SEQ: return "sequential";
    case DNNL_RUNTIME_OMP: return "openmp";
    case DNNL_RUNTIME_TBB: return "tbb";
    case DNNL_RUNTIME_THREADPOOL: return "threadpool";
    default: return "other";
  }
}

// info(): { version, commit, cpuRuntime, isa, avx512Bf16, amxBf16, bf16Hardware, threads }
static napi_value Info(napi_env env, napi_callback_info) {
  const dnnl_version_t *v = dnnl_version();
  char ver[48];
  std::snprintf(ver, sizeof ver, "%d.%d.%d", v->major, v->minor, v->patch);
  const CpuFeatures &f = cpu();
  napi_value o, n;
  napi_create_object(env, &o);
  set_str(env, o, "version", ver);
  set_str(env, o, "commit", v->hash ? v->hash : "");
  set_str(env, o, "cpuRuntime", runtime_name(v->cpu_runtime));
  const char *isa = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());
  if (std::strncmp(isa, "cpu_isa_", 8) == 0) isa += 8;  // dnnl_cpu_isa_avx512_core_bf16 -> avx512_core_bf16
  set_str(env, o, "isa", isa);
  set_bool(env, o, "avx512Bf16", f.avx512bf16);
  set_bool(env, o, "amxBf16", f.amxbf16);
  set_bool(env, o, "bf16Hardware", f.avx512bf16 || f.amxbf16);
  napi_create_int32(env, omp_get_max_threads(), &n);
  set_prop(env, o, "threads", n);
  return o;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"sgemm", nullptr, Sgemm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"sgemmBf16", nullptr, SgemmBf16, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"sgemmBf16B", nullptr, SgemmBf16B, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"toBf16", nullptr, ToBf16, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setNumThreads", nullptr, SetNumThreads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"getNumThreads", nullptr, GetNumThreads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return nullptr;
  return exports;
}
