// Layer kernels of the engine (declarations and conventions in engine.h).
// Every parallel reduction keeps one partial per thread and sums them in thread order afterwards, so a
// given thread count always gives bit-identical results (training resumes must be bit-exact).
#include <omp.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine.h"
#include "fastmath.h"

namespace retro {

namespace {
// [start, end) of part t of n items split into T parts
inline void part(size_t n, int T, int t, size_t* s, size_t* e) {
  size_t p = (n + T - 1) / T;
  *s = std::min(n, p * t);
  *e = std::min(n, *s + p);
}
// run f(start, end) on each thread's contiguous share of n items (plain inner loops vectorise better than
// `omp parallel for simd` over calls, which GCC 12 left scalar here)
// below this many elements a kernel runs on one thread: waking the team costs more than the work (decoding
// one token per sequence measured ~60 µs per attention call with the team, most of it synchronisation)
constexpr size_t PAR_MIN = 16384;
template <typename F>
inline void parallel_range(size_t n, F f) {
#pragma omp parallel if (n >= PAR_MIN)
  {
    size_t s, e;
    part(n, omp_get_num_threads(), omp_get_thread_num(), &s, &e);
    f(s, e);
  }
}
}  // namespace

// ---------------------------------------------------------------------------------------------- embedding
void embedding_forward(float* out, const int32_t* ids, const float* wte, const float* wpe, int N, int T, int C) {
#pragma omp parallel for if ((size_t)N * C >= PAR_MIN)
  for (int n = 0; n < N; n++) {
    const float* e = wte + (size_t)ids[n] * C;
    const float* p = wpe + (size_t)(n % T) * C;
    float* o = out + (size_t)n * C;
    for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
  }
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* ids, int N, int T, int C) {
  // each thread owns a slice of channels: no two threads touch the same gradient element
#pragma omp parallel
  {
    size_t s, e;
    part(C, omp_get_num_threads(), omp_get_thread_num(), &s, &e);
    for (int n = 0; n < N; n++) {
      const float* d = dout + (size_t)n * C;
      float* gw = dwte + (size_t)ids[n] * C;
      float* gp = dwpe + (size_t)(n % T) * C;
      for (size_t i = s; i < e; i++) {
        gw[i] += d[i];
        gp[i] += d[i];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------- layernorm
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N,
                       int C) {
  const float eps = 1e-5f;
#pragma omp parallel for if ((size_t)N * C >= PAR_MIN)
  for (int n = 0; n < N; n++) {
    const float* x = inp + (size_t)n * C;
    float m = 0.f;
    for (int i = 0; i < C; i++) m += x[i];
    m /= C;
    float v = 0.f;
    for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
    v /= C;
    float s = 1.f / std::sqrt(v + eps);
    float* o = out + (size_t)n * C;
    for (int i = 0; i < C; i++) o[i] = (x[i] - m) * s * w[i] + b[i];
    mean[n] = m;
    rstd[n] = s;
  }
}

void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C, int accumulate) {
  int T = omp_get_max_threads();
  std::vector<float> partial((size_t)T * 2 * C, 0.f);
#pragma omp parallel num_threads(T)
  {
    int t = omp_get_thread_num();
    float* pw = partial.data() + (size_t)t * 2 * C;
    float* pb = pw + C;
    size_t s, e;
    part(N, T, t, &s, &e);
    for (size_t n = s; n < e; n++) {
      const float* x = inp + n * C;
      const float* d = dout + n * C;
      float m = mean[n], r = rstd[n];
      float dm = 0.f, dnm = 0.f;
      for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * r;
        float dn = w[i] * d[i];
        dm += dn;
        dnm += dn * norm;
      }
      dm /= C;
      dnm /= C;
      float* di = dinp + n * C;
      for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * r;
        pb[i] += d[i];
        pw[i] += norm * d[i];
        float g = (w[i] * d[i] - dm - norm * dnm) * r;
        di[i] = accumulate ? di[i] + g : g;
      }
    }
  }
  for (int t = 0; t < T; t++) {
    const float* pw = partial.data() + (size_t)t * 2 * C;
    for (int i = 0; i < C; i++) {
      dw[i] += pw[i];
      db[i] += pw[C + i];
    }
  }
}

// ---------------------------------------------------------------------------------------------- linear
// A few rows (decoding: one token per sequence): out = inp W^T + bias with each weight row streamed from memory
// once for all rows, 4 rows of W at a time, split over the threads by output. At N = 1 a gemm's packing of W
// costs more than the product (measured: 4.6 GB/s of weights through the portable sgemm, ~20 GB/s here).
static constexpr int GEMV_MAX_ROWS = 16;
static inline float dot(const float* a, const float* b, int n) {
  int i = 0;
  float s = 0.f;
#ifdef __AVX512F__
  __m512 acc = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  s = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}
// out[n, o0..o0+NW-1] for rows n0..n0+NN-1: a block of NN × NW dot products sharing each load. NN and NW are
// template arguments so that the accumulators stay in registers (with a run-time row count GCC kept them in memory)
template <int NN, int NW>
static inline void block_rows(float* out, const float* inp, const float* W, const float* bias, int n0, int o0, int no,
                              int IN, int OUT, bool prefetch) {
#ifdef __AVX512F__
  if (no == NW && IN % 16 == 0) {
    __m512 acc[NN][NW];
    for (int a = 0; a < NN; a++)
      for (int b = 0; b < NW; b++) acc[a][b] = _mm512_setzero_ps();
    const float* w0 = W + (size_t)o0 * IN;
    const float* x0 = inp + (size_t)n0 * IN;
    for (int i = 0; i < IN; i += 16) {
      __m512 w[NW];
      if (prefetch)  // the next block's rows, as far ahead as this block is long: DRAM streams while we compute
        for (int b = 0; b < NW; b++) _mm_prefetch((const char*)(w0 + (size_t)(NW + b) * IN + i), _MM_HINT_T0);
      for (int b = 0; b < NW; b++) {
        w[b] = _mm512_loadu_ps(w0 + (size_t)b * IN + i);
        // keep each loaded vector in a register: GCC otherwise folds the x loads into every FMA (NN·NW loads
        // instead of NN + NW), which made this load-bound
        asm("" : "+v"(w[b]));
      }
      for (int a = 0; a < NN; a++) {
        __m512 x = _mm512_loadu_ps(x0 + (size_t)a * IN + i);
        asm("" : "+v"(x));
        for (int b = 0; b < NW; b++) acc[a][b] = _mm512_fmadd_ps(w[b], x, acc[a][b]);
      }
    }
    for (int a = 0; a < NN; a++)
      for (int b = 0; b < NW; b++)
        out[(size_t)(n0 + a) * OUT + o0 + b] = _mm512_reduce_add_ps(acc[a][b]) + (bias ? bias[o0 + b] : 0.f);
    return;
  }
#endif
  for (int a = 0; a < NN; a++)
    for (int b = 0; b < no; b++)
      out[(size_t)(n0 + a) * OUT + o0 + b] = dot(inp + (size_t)(n0 + a) * IN, W + (size_t)(o0 + b) * IN, IN) + (bias ? bias[o0 + b] : 0.f);
}
static void linear_forward_rows(float* out, const float* inp, const float* W, const float* bias, int N, int IN, int OUT) {
  const int blocks = (OUT + 3) / 4;
#pragma omp parallel for schedule(static) if ((size_t)OUT * IN >= 32768)
  for (int bo = 0; bo < blocks; bo++) {
    const int o0 = bo * 4, no = std::min(4, OUT - o0);
    int n0 = 0;
    // the first pass over this block's weights prefetches the next block's (not past the last row)
    const bool pf = o0 + 8 <= OUT;
    for (; n0 + 4 <= N; n0 += 4) block_rows<4, 4>(out, inp, W, bias, n0, o0, no, IN, OUT, pf && n0 == 0);
    switch (N - n0) {
      case 3: block_rows<3, 4>(out, inp, W, bias, n0, o0, no, IN, OUT, pf && n0 == 0); break;
      case 2: block_rows<2, 4>(out, inp, W, bias, n0, o0, no, IN, OUT, pf && n0 == 0); break;
      case 1: block_rows<1, 4>(out, inp, W, bias, n0, o0, no, IN, OUT, pf && n0 == 0); break;
      default: break;
    }
  }
}

void linear_forward(float* out, const float* inp, const float* W, const float* bias, int N, int IN, int OUT) {
  if (N <= GEMV_MAX_ROWS) return linear_forward_rows(out, inp, W, bias, N, IN, OUT);
  if (bias) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) std::memcpy(out + (size_t)n * OUT, bias, sizeof(float) * OUT);
  }
  gemm(false, true, N, OUT, IN, 1.f, inp, IN, W, IN, bias ? 1.f : 0.f, out, OUT);
}

void linear_backward(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N,
                     int IN, int OUT, int accumulate) {
  if (dinp) gemm(false, false, N, IN, OUT, 1.f, dout, OUT, W, IN, accumulate ? 1.f : 0.f, dinp, IN);
  if (dW) gemm(true, false, OUT, IN, N, 1.f, dout, OUT, inp, IN, 1.f, dW, IN);
  if (db) {
#pragma omp parallel
    {
      size_t s, e;
      part(OUT, omp_get_num_threads(), omp_get_thread_num(), &s, &e);
      for (int n = 0; n < N; n++) {
        const float* d = dout + (size_t)n * OUT;
        for (size_t o = s; o < e; o++) db[o] += d[o];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------- GELU (tanh)
namespace {
const float GELU_S = 0.7978845608028654f;  // sqrt(2/pi)
// tanh through exp, branch-free so that the loops vectorise; saturates correctly for large |u|
inline float tanh_fast(float u) {
  float e = exp_fast(-2.f * std::fabs(u));
  float t = (1.f - e) / (1.f + e);
  return std::copysign(t, u);
}
}  // namespace

void gelu_forward(float* out, const float* inp, size_t n) {
  parallel_range(n, [=](size_t s, size_t e) {
    float* __restrict o = out;
    const float* __restrict in = inp;
    for (size_t i = s; i < e; i++) {
      float x = in[i];
      float t = tanh_fast(GELU_S * (x + 0.044715f * x * x * x));
      o[i] = 0.5f * x * (1.f + t);
    }
  });
}

void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
  parallel_range(n, [=](size_t s, size_t e) {
    float* __restrict di = dinp;
    const float* __restrict in = inp;
    const float* __restrict d = dout;
    for (size_t i = s; i < e; i++) {
      float x = in[i];
      float t = tanh_fast(GELU_S * (x + 0.044715f * x * x * x));
      float sech2 = 1.f - t * t;
      float g = 0.5f * (1.f + t) + 0.5f * x * sech2 * GELU_S * (1.f + 3.f * 0.044715f * x * x);
      di[i] = g * d[i];
    }
  });
}

// ---------------------------------------------------------------------------------------------- attention
// dP [rows, cols] becomes dS = P * (dP - rowsum(P * dP)), times the score scale (the softmax's backward)
static inline void softmax_backward_rows(float* dP, const float* P, int rows, int cols, float scale) {
  for (int i = 0; i < rows; i++) {
    const float* p = P + (size_t)i * cols;
    float* d = dP + (size_t)i * cols;
    double dot = 0.0;  // double: dS is a small difference of nearly equal terms when attention is flat
    for (int j = 0; j < cols; j++) dot += (double)p[j] * d[j];
    for (int j = 0; j < cols; j++) d[j] = p[j] * (float)((double)d[j] - dot) * scale;
  }
}

void attention_forward(float* out, float* probs, const float* q, int qs, const float* k, const float* v, int kvs,
                       int B, int T, int S, int H, int hd, int causal, int kvdiv, int qpos0) {
  const int D = H * hd;
  const float scale = 1.f / std::sqrt((float)hd);
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * H * T * S * hd >= 16 * PAR_MIN)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < H; h++) {
      float* P = probs + ((size_t)b * H + h) * T * S;
      const float* Q = q + (size_t)b * T * qs + h * hd;
      const float* K = k + (size_t)(b / kvdiv) * S * kvs + h * hd;
      const float* V = v + (size_t)(b / kvdiv) * S * kvs + h * hd;
      // a few queries (decoding: one per sequence) take dot products over the keys, not two small gemms,
      // whose packing costs more than the product at T = 1 (measured 73 µs vs ~10 µs at S = 200)
      const bool few = T <= 4;
      if (!few) gemm1(false, true, T, S, hd, scale, Q, qs, K, kvs, 0.f, P, S);
      for (int i = 0; i < T; i++) {
        float* row = P + (size_t)i * S;
        int lim = causal ? std::min(qpos0 + i + 1, S) : S;
        if (few)
          for (int j = 0; j < lim; j++) row[j] = scale * dot(Q + (size_t)i * qs, K + (size_t)j * kvs, hd);
        float mx = -INFINITY;
        for (int j = 0; j < lim; j++) mx = std::max(mx, row[j]);
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < lim; j++) {
          row[j] = std::exp(row[j] - mx);
          sum += row[j];
        }
        float inv = 1.f / sum;
        for (int j = 0; j < lim; j++) row[j] *= inv;
        for (int j = lim; j < S; j++) row[j] = 0.f;
        if (few) {
          float* o = out + ((size_t)b * T + i) * D + h * hd;
          for (int c = 0; c < hd; c++) o[c] = 0.f;
          for (int j = 0; j < lim; j++) {
            const float pj = row[j];
            const float* vj = V + (size_t)j * kvs;
#pragma omp simd
            for (int c = 0; c < hd; c++) o[c] += pj * vj[c];
          }
        }
      }
      if (!few) gemm1(false, false, T, hd, S, 1.f, P, S, V, kvs, 0.f, out + (size_t)b * T * D + h * hd, D);
    }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        int qs, const float* k, const float* v, int kvs, int B, int T, int S, int H, int hd,
                        int kvdiv) {
  const int D = H * hd;
  const float scale = 1.f / std::sqrt((float)hd);
  const int BK = B / kvdiv;
  // one task per (key batch, head): the kvdiv query batches sharing those keys run in order inside it,
  // so their dK / dV contributions are summed without races and in a fixed order
#pragma omp parallel
  {
    // per-thread scratch kept across calls: a fresh 256 KB vector per call went to mmap/munmap each time
    thread_local std::vector<float> dP;
    if (dP.size() < (size_t)T * S) dP.resize((size_t)T * S);
#pragma omp for collapse(2) schedule(static)
    for (int bk = 0; bk < BK; bk++) {
      for (int h = 0; h < H; h++) {
        const float* K = k + (size_t)bk * S * kvs + h * hd;
        const float* V = v + (size_t)bk * S * kvs + h * hd;
        float* dK = dk + (size_t)bk * S * kvs + h * hd;
        float* dV = dv + (size_t)bk * S * kvs + h * hd;
        for (int sub = 0; sub < kvdiv; sub++) {
          int b = bk * kvdiv + sub;
          const float* P = probs + ((size_t)b * H + h) * T * S;
          const float* dY = dout + (size_t)b * T * D + h * hd;
          const float* Q = q + (size_t)b * T * qs + h * hd;
          float* dQ = dq + (size_t)b * T * qs + h * hd;
          float beta = sub == 0 ? 0.f : 1.f;
          gemm1(false, true, T, S, hd, 1.f, dY, D, V, kvs, 0.f, dP.data(), S);  // dP = dY V^T
          gemm1(true, false, S, hd, T, 1.f, P, S, dY, D, beta, dV, kvs);         // dV = P^T dY
          softmax_backward_rows(dP.data(), P, T, S, scale);
          gemm1(false, false, T, hd, S, 1.f, dP.data(), S, K, kvs, 0.f, dQ, qs);  // dQ = dS K
          gemm1(true, false, S, hd, T, 1.f, dP.data(), S, Q, qs, beta, dK, kvs);  // dK = dS^T Q
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------- attention, decoding
void attention_decode(float* out, const float* q, const float* const* kv, const int* T, const int* S, const int* row0,
                      int F, int H, int hd) {
  const int D = H * hd;
  const float scale = 1.f / std::sqrt((float)hd);
  size_t work = 0;
  int smax = 0;
  for (int f = 0; f < F; f++) work += (size_t)T[f] * S[f], smax = std::max(smax, S[f]);
  work *= (size_t)H * hd;
#pragma omp parallel if (work >= 16 * PAR_MIN)
  {
    std::vector<float> row(smax);
#pragma omp for collapse(2) schedule(static)
    for (int f = 0; f < F; f++) {
      for (int h = 0; h < H; h++) {
        const float* K = kv[f] + h * hd;
        const float* V = kv[f] + D + h * hd;
        for (int i = 0; i < T[f]; i++) {
          const int lim = S[f] - T[f] + i + 1;  // causal: the query at position S − T + i sees keys 0 … itself
          const float* Q = q + (size_t)(row0[f] + i) * D + h * hd;
          float mx = -INFINITY;
          for (int j = 0; j < lim; j++) {
            row[j] = scale * dot(Q, K + (size_t)j * 2 * D, hd);
            mx = std::max(mx, row[j]);
          }
          float sum = 0.f;
          for (int j = 0; j < lim; j++) sum += (row[j] = std::exp(row[j] - mx));
          const float inv = 1.f / sum;
          float* o = out + (size_t)(row0[f] + i) * D + h * hd;
          for (int c = 0; c < hd; c++) o[c] = 0.f;
          for (int j = 0; j < lim; j++) {
            const float pj = row[j] * inv;
            const float* vj = V + (size_t)j * 2 * D;
#pragma omp simd
            for (int c = 0; c < hd; c++) o[c] += pj * vj[c];
          }
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------- attention, lse variant
// The same attention without a [T, S] buffer per head (what a 1,024-token context needs: GPT-2 small keeps
// 12 heads × 1,024² floats per sequence and layer otherwise). Queries run in blocks of QB rows against all
// the keys they see, in a per-thread [QB, S] scratch; the forward keeps each row's log-sum-exp, the backward
// recomputes the block's probabilities from it (FlashAttention's recomputation, with whole rows per block: no
// online softmax is needed when a block's row of scores fits in the scratch, so the arithmetic per row is the
// forward above, term for term).
namespace {
constexpr int QB = 64;
thread_local std::vector<float> attn_scratch;
float* scratch(size_t n) {
  if (attn_scratch.size() < n) attn_scratch.resize(n);
  return attn_scratch.data();
}
// P[nb, Sb] = exp(scale Q Kᵀ − lse) for the rows [i0, i0 + nb) of one head (0 past each row's causal limit);
// with lse null, a softmax whose log-sum-exp is written to lse_out
void block_probs(float* P, int Sb, const float* Q, int qs, const float* K, int kvs, int hd, float scale, int i0,
                 int nb, int S, int causal, int qpos0, const float* lse, float* lse_out) {
  gemm1(false, true, nb, Sb, hd, scale, Q + (size_t)i0 * qs, qs, K, kvs, 0.f, P, Sb);
  for (int r = 0; r < nb; r++) {
    float* row = P + (size_t)r * Sb;
    int lim = causal ? std::min(qpos0 + i0 + r + 1, S) : S;
    float off;
    if (lse) {
      off = lse[i0 + r];
    } else {
      float mx = -INFINITY;
      for (int j = 0; j < lim; j++) mx = std::max(mx, row[j]);
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int j = 0; j < lim; j++) sum += std::exp(row[j] - mx);
      off = mx + std::log(sum);
      lse_out[i0 + r] = off;
    }
#pragma omp simd
    for (int j = 0; j < lim; j++) row[j] = std::exp(row[j] - off);
    for (int j = lim; j < Sb; j++) row[j] = 0.f;
  }
}
// keys seen by rows [i0, i0 + nb): all S, or up to the last row's causal limit
inline int block_keys(int i0, int nb, int S, int causal, int qpos0) {
  return causal ? std::min(qpos0 + i0 + nb, S) : S;
}
}  // namespace

void attention_forward_lse(float* out, float* lse, const float* q, int qs, const float* k, const float* v, int kvs,
                           int B, int T, int S, int H, int hd, int causal, int kvdiv, int qpos0) {
  const int D = H * hd;
  const float scale = 1.f / std::sqrt((float)hd);
  const int NB = (T + QB - 1) / QB;
#pragma omp parallel for collapse(3) schedule(static) if ((size_t)B * H * T * S * hd >= 16 * PAR_MIN)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < H; h++) {
      for (int blk = 0; blk < NB; blk++) {
        const int i0 = blk * QB, nb = std::min(QB, T - i0), Sb = block_keys(i0, nb, S, causal, qpos0);
        const float* Q = q + (size_t)b * T * qs + h * hd;
        const float* K = k + (size_t)(b / kvdiv) * S * kvs + h * hd;
        const float* V = v + (size_t)(b / kvdiv) * S * kvs + h * hd;
        float* P = scratch((size_t)QB * S);
        block_probs(P, Sb, Q, qs, K, kvs, hd, scale, i0, nb, S, causal, qpos0, nullptr,
                    lse + ((size_t)b * H + h) * T);
        gemm1(false, false, nb, hd, Sb, 1.f, P, Sb, V, kvs, 0.f, out + ((size_t)b * T + i0) * D + h * hd, D);
      }
    }
  }
}

void attention_backward_lse(float* dq, float* dk, float* dv, const float* dout, const float* lse, const float* q,
                            int qs, const float* k, const float* v, int kvs, int B, int T, int S, int H, int hd,
                            int causal, int kvdiv) {
  const int D = H * hd;
  const float scale = 1.f / std::sqrt((float)hd);
  const int BK = B / kvdiv, NB = (T + QB - 1) / QB;
  // one task per (key batch, head), as in attention_backward: dK / dV summed in a fixed order without races
#pragma omp parallel for collapse(2) schedule(static)
  for (int bk = 0; bk < BK; bk++) {
    for (int h = 0; h < H; h++) {
      const float* K = k + (size_t)bk * S * kvs + h * hd;
      const float* V = v + (size_t)bk * S * kvs + h * hd;
      float* dK = dk + (size_t)bk * S * kvs + h * hd;
      float* dV = dv + (size_t)bk * S * kvs + h * hd;
      for (int j = 0; j < S; j++) {
        std::memset(dK + (size_t)j * kvs, 0, hd * sizeof(float));
        std::memset(dV + (size_t)j * kvs, 0, hd * sizeof(float));
      }
      float* P = scratch((size_t)2 * QB * S);
      float* dP = P + (size_t)QB * S;
      for (int sub = 0; sub < kvdiv; sub++) {
        const int b = bk * kvdiv + sub;
        const float* Q = q + (size_t)b * T * qs + h * hd;
        const float* L = lse + ((size_t)b * H + h) * T;
        for (int blk = 0; blk < NB; blk++) {
          const int i0 = blk * QB, nb = std::min(QB, T - i0), Sb = block_keys(i0, nb, S, causal, 0);
          const float* dY = dout + ((size_t)b * T + i0) * D + h * hd;
          float* dQ = dq + ((size_t)b * T + i0) * qs + h * hd;
          block_probs(P, Sb, Q, qs, K, kvs, hd, scale, i0, nb, S, causal, 0, L, nullptr);
          gemm1(false, true, nb, Sb, hd, 1.f, dY, D, V, kvs, 0.f, dP, Sb);  // dP = dY Vᵀ
          gemm1(true, false, Sb, hd, nb, 1.f, P, Sb, dY, D, 1.f, dV, kvs);  // dV += Pᵀ dY
          softmax_backward_rows(dP, P, nb, Sb, scale);
          gemm1(false, false, nb, hd, Sb, 1.f, dP, Sb, K, kvs, 0.f, dQ, qs);  // dQ = dS K
          gemm1(true, false, Sb, hd, nb, 1.f, dP, Sb, Q + (size_t)i0 * qs, qs, 1.f, dK, kvs);  // dK += dSᵀ Q
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------- loss
double crossentropy_forward_backward(float* logits, float* losses, const int32_t* targets, const float* mask, int N,
                                     int V, float dscale) {
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    float* row = logits + (size_t)n * V;
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = std::max(mx, row[i]);
    int y = targets[n];
    float zy = row[y] - mx;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < V; i++) {
      row[i] = exp_fast(row[i] - mx);
      sum += row[i];
    }
    losses[n] = std::log(sum) - zy;
    float w = (mask ? mask[n] : 1.f) * dscale;
    float scale = w / sum;
#pragma omp simd
    for (int i = 0; i < V; i++) row[i] *= scale;
    row[y] -= w;
  }
  double total = 0.0;
  for (int n = 0; n < N; n++) total += (double)(mask ? mask[n] : 1.f) * losses[n];
  return total;
}

// ---------------------------------------------------------------------------------------------- optimiser
void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2, float eps, float wd,
           int t, float gscale) {
  const float c1 = 1.f - std::pow(b1, (float)t), c2 = 1.f - std::pow(b2, (float)t);
  parallel_range(n, [=](size_t s, size_t e) {
    float* __restrict P = p;
    float* __restrict M = m;
    float* __restrict Vv = v;
    const float* __restrict G = g;
    for (size_t i = s; i < e; i++) {
      float gi = G[i] * gscale;
      float mi = b1 * M[i] + (1.f - b1) * gi;
      float vi = b2 * Vv[i] + (1.f - b2) * gi * gi;
      M[i] = mi;
      Vv[i] = vi;
      float pi = P[i] * (1.f - lr * wd);
      P[i] = pi - lr * (mi / c1) / (std::sqrt(vi / c2) + eps);
    }
  });
}

// ---------------------------------------------------------------------------------------------- elementwise
// Rotary positions, GPT-NeoX's "half" layout (RoFormer; RETRO-pytorch uses the same): in each head of hd
// channels, the pair (x[j], x[j + hd/2]) of row n is rotated by the angle pos[n % P] * base^(-j / (hd/2)).
// sign -1 rotates back, which is the backward (the rotation is orthogonal: the gradient of y = R x is R^T dy).
// The cos / sin table is computed in double once per call ([P, hd/2] entries), then applied row by row.
void rope(float* x, int xs, int N, int H, int hd, const int32_t* pos, int P, float base, int sign) {
  const int half = hd / 2;
  std::vector<float> cs((size_t)P * half), sn((size_t)P * half);
  for (int p = 0; p < P; p++)
    for (int j = 0; j < half; j++) {
      double a = (double)pos[p] * std::pow((double)base, -(double)j / half);
      cs[(size_t)p * half + j] = (float)std::cos(a);
      sn[(size_t)p * half + j] = (float)(sign < 0 ? -std::sin(a) : std::sin(a));
    }
#pragma omp parallel for schedule(static) if ((size_t)N * H * hd >= PAR_MIN)
  for (int n = 0; n < N; n++) {
    const float* c = cs.data() + (size_t)(n % P) * half;
    const float* s = sn.data() + (size_t)(n % P) * half;
    float* row = x + (size_t)n * xs;
    for (int h = 0; h < H; h++) {
      float* x1 = row + (size_t)h * hd;
      float* x2 = x1 + half;
#pragma omp simd
      for (int j = 0; j < half; j++) {
        float a = x1[j], b = x2[j];
        x1[j] = a * c[j] - b * s[j];
        x2[j] = a * s[j] + b * c[j];
      }
    }
  }
}

void add(float* out, const float* a, const float* b, size_t n) {
  parallel_range(n, [=](size_t s, size_t e) {
    for (size_t i = s; i < e; i++) out[i] = a[i] + b[i];
  });
}

void axpy(float* y, const float* x, float alpha, size_t n) {
  parallel_range(n, [=](size_t s, size_t e) {
    for (size_t i = s; i < e; i++) y[i] += alpha * x[i];
  });
}

double sumsq(const float* x, size_t n) {
  int T = omp_get_max_threads();
  std::vector<double> partial(T, 0.0);
#pragma omp parallel num_threads(T)
  {
    int t = omp_get_thread_num();
    size_t s, e;
    part(n, T, t, &s, &e);
    double acc = 0.0;
    for (size_t i = s; i < e; i++) acc += (double)x[i] * x[i];
    partial[t] = acc;
  }
  double total = 0.0;
  for (int t = 0; t < T; t++) total += partial[t];
  return total;
}

}  // namespace retro
