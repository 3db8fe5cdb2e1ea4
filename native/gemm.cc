// Matrix products for the engine: row-major C[M,N] = alpha * op(A) op(B) + beta * C.
//
// Two back ends, chosen at build time:
//  - RETRO_HAVE_CBLAS: cblas_sgemm from the system BLAS (OpenBLAS from Debian's libopenblas-dev), kept
//    single-threaded; the engine splits each product across its own OpenMP threads instead, so that
//    BLAS threads and kernel threads never compete for the two cores.
//  - otherwise a portable packed kernel (below), so a machine without any BLAS still builds and trains.
//    It is written by hand because no BLAS is available to link there; it follows the usual
//    Goto/BLIS structure (pack a KC x NC panel of B and an MC x KC panel of A, 8 x 32 register tile)
//    with GCC vector extensions, which compile to AVX-512, AVX2 or SSE as the build machine allows.
#include "engine.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>
#include <cstdint>
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#ifdef RETRO_HAVE_CBLAS
#include <cblas.h>
#endif

namespace retro {

#ifndef RETRO_HAVE_CBLAS
namespace {
constexpr int MR = 8, NR = 32, KC = 256, MC = 128, NC = 1024;

#if defined(__AVX512F__)
typedef float v16 __attribute__((vector_size(64)));

inline v16 load16(const float* p) { v16 v; std::memcpy(&v, p, sizeof v); return v; }
inline void store16(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

// acc(MR x NR) = sum_k a[k*MR + i] * b[k*NR + j]; then C += acc on the valid mr x nr part.
void micro(int kc, const float* a, const float* b, float* C, int ldc, int mr, int nr) {
  v16 c[MR][2] = {};
  for (int k = 0; k < kc; k++) {
    v16 b0 = load16(b + k * NR), b1 = load16(b + k * NR + 16);
    const float* ak = a + k * MR;
    for (int i = 0; i < MR; i++) {
      v16 av = v16{} + ak[i];
      c[i][0] += av * b0;
      c[i][1] += av * b1;
    }
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; i++) {
      float* ci = C + (size_t)i * ldc;
      store16(ci, load16(ci) + c[i][0]);
      store16(ci + 16, load16(ci + 16) + c[i][1]);
    }
  } else {
    alignas(64) float t[MR][NR];
    for (int i = 0; i < MR; i++) { store16(t[i], c[i][0]); store16(t[i] + 16, c[i][1]); }
    for (int i = 0; i < mr; i++)
      for (int j = 0; j < nr; j++) C[(size_t)i * ldc + j] += t[i][j];
  }
}
#else
// Without AVX-512 (e.g. the prebuilt binary, built for x86-64-v3): 64-byte vectors would be lowered badly (measured
// 46x slower), so the same 8 x 32 tile is computed as four 4 x 16 quarters in 32-byte (AVX2) vectors, 8 accumulators
// each, within the 16 ymm registers. Each element still sums over k in order, as above.
typedef float v8 __attribute__((vector_size(32)));

inline v8 load8(const float* p) { v8 v; std::memcpy(&v, p, sizeof v); return v; }
inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }

void micro(int kc, const float* a, const float* b, float* C, int ldc, int mr, int nr) {
  alignas(64) float t[MR][NR];
  for (int ih = 0; ih < MR; ih += 4)
    for (int jh = 0; jh < NR; jh += 16) {
      v8 c[4][2] = {};
      for (int k = 0; k < kc; k++) {
        v8 b0 = load8(b + k * NR + jh), b1 = load8(b + k * NR + jh + 8);
        const float* ak = a + k * MR + ih;
        for (int i = 0; i < 4; i++) {
          v8 av = v8{} + ak[i];
          c[i][0] += av * b0;
          c[i][1] += av * b1;
        }
      }
      for (int i = 0; i < 4; i++) { store8(t[ih + i] + jh, c[i][0]); store8(t[ih + i] + jh + 8, c[i][1]); }
    }
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) C[(size_t)i * ldc + j] += t[i][j];
}
#endif

void gemm_portable(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; i++) {
    float* ci = C + (size_t)i * ldc;
    if (beta == 0.f) std::fill(ci, ci + N, 0.f);
    else if (beta != 1.f) for (int j = 0; j < N; j++) ci[j] *= beta;
  }
  if (K == 0 || alpha == 0.f) return;
  thread_local std::vector<float> pa, pb;
  pa.resize((size_t)MC * KC);
  pb.resize((size_t)KC * NC);
  for (int jc = 0; jc < N; jc += NC) {
    int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      int kc = std::min(KC, K - pc);
      for (int jr = 0; jr < nc; jr += NR) {  // pack B (alpha folded in), zero-padded to NR
        float* dst = pb.data() + (size_t)(jr / NR) * kc * NR;
        for (int k = 0; k < kc; k++)
          for (int j = 0; j < NR; j++) {
            int col = jc + jr + j, row = pc + k;
            dst[k * NR + j] = col < N ? alpha * (tb ? B[(size_t)col * ldb + row] : B[(size_t)row * ldb + col]) : 0.f;
          }
      }
      for (int ic = 0; ic < M; ic += MC) {
        int mc = std::min(MC, M - ic);
        for (int ir = 0; ir < mc; ir += MR) {  // pack A, zero-padded to MR
          float* dst = pa.data() + (size_t)(ir / MR) * kc * MR;
          for (int k = 0; k < kc; k++)
            for (int i = 0; i < MR; i++) {
              int row = ic + ir + i, col = pc + k;
              dst[k * MR + i] = row < M ? (ta ? A[(size_t)col * lda + row] : A[(size_t)row * lda + col]) : 0.f;
            }
        }
        for (int jr = 0; jr < nc; jr += NR)
          for (int ir = 0; ir < mc; ir += MR)
            micro(kc, pa.data() + (size_t)(ir / MR) * kc * MR, pb.data() + (size_t)(jr / NR) * kc * NR,
                  C + (size_t)(ic + ir) * ldc + jc + jr, ldc, std::min(MR, mc - ir), std::min(NR, nc - jr));
      }
    }
  }
}
}  // namespace
#endif

const char* gemm_backend() {
#ifdef RETRO_HAVE_CBLAS
  return "openblas";
#else
  return "portable";
#endif
}

void gemm_init() {
#if defined(RETRO_HAVE_CBLAS) && defined(RETRO_HAVE_OPENBLAS)
  openblas_set_num_threads(1);
#endif
}

void gemm1(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
#ifdef RETRO_HAVE_CBLAS
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
              B, ldb, beta, C, ldc);
#else
  gemm_portable(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}


// ---- bf16 products (AVX512-BF16: VDPBF16PS), with fp32 inputs converted while packing (round to nearest
// even) and fp32 accumulation. Written here because Debian's OpenBLAS is built without cblas_sbgemm.
// Packed layouts hold K in pairs: A as [K/2][MR] and B as [K/2][NR] 32-bit words of two bf16 each, so one
// VDPBF16PS adds a[i][k]·b[k][j] + a[i][k+1]·b[k+1][j] into each fp32 lane.
#if defined(__AVX512BF16__)
namespace bf {
constexpr int MR = 8, NR = 32, KC = 256, MC = 128, NC = 1024;
static inline uint16_t tobf(float f) { uint32_t b; std::memcpy(&b, &f, 4); b += 0x7fff + ((b >> 16) & 1); return (uint16_t)(b >> 16); }
// a: [kc2][MR] of uint32 (pairs), b: [kc2][NR] of uint32 pairs
void micro_bf16(int kc2, const uint32_t* a, const uint32_t* b, float* C, int ldc, int mr, int nr) {
  __m512 c[MR][2];
  for (int i = 0; i < MR; i++) { c[i][0] = _mm512_setzero_ps(); c[i][1] = _mm512_setzero_ps(); }
  for (int k = 0; k < kc2; k++) {
    __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + k * NR), b1 = (__m512bh)_mm512_loadu_si512(b + k * NR + 16);
    for (int i = 0; i < MR; i++) {
      __m512bh av = (__m512bh)_mm512_set1_epi32(a[k * MR + i]);
      c[i][0] = _mm512_dpbf16_ps(c[i][0], av, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], av, b1);
    }
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; i++) { float* ci = C + (size_t)i * ldc; _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), c[i][0])); _mm512_storeu_ps(ci + 16, _mm512_add_ps(_mm512_loadu_ps(ci + 16), c[i][1])); }
  } else {
    alignas(64) float t[MR][NR];
    for (int i = 0; i < MR; i++) { _mm512_store_ps(t[i], c[i][0]); _mm512_store_ps(t[i] + 16, c[i][1]); }
    for (int i = 0; i < mr; i++) for (int j = 0; j < nr; j++) C[(size_t)i * ldc + j] += t[i][j];
  }
}
void gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; i++) { float* ci = C + (size_t)i * ldc; if (beta == 0.f) std::fill(ci, ci + N, 0.f); else if (beta != 1.f) for (int j = 0; j < N; j++) ci[j] *= beta; }
  thread_local std::vector<uint32_t> pa, pb;
  pa.resize((size_t)MC * KC / 2); pb.resize((size_t)KC / 2 * NC);
  auto av = [&](int r, int c) { return ta ? A[(size_t)c * lda + r] : A[(size_t)r * lda + c]; };
  auto bv = [&](int r, int c) { return tb ? B[(size_t)c * ldb + r] : B[(size_t)r * ldb + c]; };
  for (int jc = 0; jc < N; jc += NC) {
    int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      int kc = std::min(KC, K - pc), kc2 = (kc + 1) / 2;
      for (int jr = 0; jr < nc; jr += NR) {
        uint32_t* dst = pb.data() + (size_t)(jr / NR) * kc2 * NR;
        for (int k2 = 0; k2 < kc2; k2++) for (int j = 0; j < NR; j++) {
          int col = jc + jr + j, r0 = pc + 2 * k2;
          uint16_t lo = col < N ? tobf(alpha * bv(r0, col)) : 0, hi = (col < N && r0 + 1 < pc + kc) ? tobf(alpha * bv(r0 + 1, col)) : 0;
          dst[k2 * NR + j] = (uint32_t)lo | ((uint32_t)hi << 16);
        }
      }
      for (int ic = 0; ic < M; ic += MC) {
        int mc = std::min(MC, M - ic);
        for (int ir = 0; ir < mc; ir += MR) {
          uint32_t* dst = pa.data() + (size_t)(ir / MR) * kc2 * MR;
          for (int k2 = 0; k2 < kc2; k2++) for (int i = 0; i < MR; i++) {
            int row = ic + ir + i, c0 = pc + 2 * k2;
            uint16_t lo = row < M ? tobf(av(row, c0)) : 0, hi = (row < M && c0 + 1 < pc + kc) ? tobf(av(row, c0 + 1)) : 0;
            dst[k2 * MR + i] = (uint32_t)lo | ((uint32_t)hi << 16);
          }
        }
        for (int jr = 0; jr < nc; jr += NR) for (int ir = 0; ir < mc; ir += MR)
          micro_bf16(kc2, pa.data() + (size_t)(ir / MR) * kc2 * MR, pb.data() + (size_t)(jr / NR) * kc2 * NR, C + (size_t)(ic + ir) * ldc + jc + jr, ldc, std::min(MR, mc - ir), std::min(NR, nc - jr));
      }
    }
  }
}
}  // namespace
#endif

bool bf16_available() {
#if defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

static bool g_bf16 = false;
bool set_bf16(bool on) {
  if (on && !bf16_available()) return false;
  g_bf16 = on;
  return true;
}
bool get_bf16() { return g_bf16; }

// one part of a product split across threads: fp32 (BLAS or portable) or bf16
static void gemm_part(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                      int ldb, float beta, float* C, int ldc) {
#if defined(__AVX512BF16__)
  if (g_bf16) {
    bf::gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
#endif
  gemm1(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  int T = omp_get_max_threads();
  if (T <= 1 || (long)M * N * K < 4L * 1024 * 1024) {
    gemm_part(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the larger output dimension into T contiguous parts, 32-aligned, one per thread.
  bool rows = M >= N;
  int D = rows ? M : N;
  int part = ((D + T - 1) / T + 31) / 32 * 32;
#pragma omp parallel for schedule(static, 1)
  for (int t = 0; t < T; t++) {
    int s = t * part, e = std::min(D, s + part);
    if (s >= e) continue;
    if (rows)
      gemm_part(ta, tb, e - s, N, K, alpha, ta ? A + s : A + (size_t)s * lda, lda, B, ldb, beta, C + (size_t)s * ldc,
            ldc);
    else
      gemm_part(ta, tb, M, e - s, K, alpha, A, lda, tb ? B + (size_t)s * ldb : B + s, ldb, beta, C + s, ldc);
  }
}

}  // namespace retro
