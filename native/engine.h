// The retro-ts kernel engine: one forward and one backward function per layer over flat float32
// buffers (llm.c style). Row-major everywhere; "N" is the number of rows (tokens), "C" channels.
// Backward functions ACCUMULATE into parameter gradients (dw, db, dwte...) and, unless noted,
// OVERWRITE the input gradient.
#pragma once
#include <cstddef>
#include <cstdint>

namespace retro {

// ---- matrix products (gemm.cc) ----
const char* gemm_backend();
void gemm_init();
// single-threaded product, safe to call from inside a parallel region
void gemm1(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc);
// bf16 products (fp32 in and out, bf16 multiplies, fp32 accumulation) for gemm(); false if the CPU build lacks AVX512-BF16
bool bf16_available();
bool set_bf16(bool on);
bool get_bf16();
// product split across the engine's threads (in bf16 when set_bf16(true))
void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc);

// ---- layers (kernels.cc) ----
// out[n] = wte[ids[n]] + wpe[n % T]
void embedding_forward(float* out, const int32_t* ids, const float* wte, const float* wpe, int N, int T, int C);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* ids, int N, int T, int C);

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N,
                       int C);
// dinp is accumulated into when accumulate != 0
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C, int accumulate);

// out[N,OUT] = inp[N,IN] W[OUT,IN]^T + bias
void linear_forward(float* out, const float* inp, const float* W, const float* bias, int N, int IN, int OUT);
// any of dinp / dW / db may be null (skipped); dinp accumulated into when accumulate != 0
void linear_backward(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N,
                     int IN, int OUT, int accumulate);

void gelu_forward(float* out, const float* inp, size_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n);

// Multi-head attention of q rows [B,T] (row stride qs) over k/v rows [B/kvdiv, S] (row stride kvs);
// out [B,T,H*hd] (row stride H*hd), probs [B,H,T,S] saved for backward. causal: key j visible to query i iff
// j <= qpos0 + i (queries start at position qpos0 of the keys: 0 in training, the cache length when decoding).
void attention_forward(float* out, float* probs, const float* q, int qs, const float* k, const float* v, int kvs,
                       int B, int T, int S, int H, int hd, int causal, int kvdiv, int qpos0 = 0);
// overwrites dq (stride qs) and dk/dv (stride kvs)
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        int qs, const float* k, const float* v, int kvs, int B, int T, int S, int H, int hd,
                        int kvdiv);

// The same attention keeping only each query row's log-sum-exp, lse [B, H, T], instead of probs: no [T, S] buffer
// (blocks of 64 query rows in a per-thread scratch; the backward recomputes their probabilities)
void attention_forward_lse(float* out, float* lse, const float* q, int qs, const float* k, const float* v, int kvs,
                           int B, int T, int S, int H, int hd, int causal, int kvdiv, int qpos0 = 0);
// overwrites dq (stride qs) and dk/dv (stride kvs); causal as in the forward (qpos0 0: training)
void attention_backward_lse(float* dq, float* dk, float* dv, const float* dout, const float* lse, const float* q,
                            int qs, const float* k, const float* v, int kvs, int B, int T, int S, int H, int hd,
                            int causal, int kvdiv);

// Decoding: F sequences in one call, each with its own key/value cache kv[f] (S[f] rows of stride 2·H·hd: keys,
// then values) and T[f] new query rows (few: one per decoding step) at positions S[f] − T[f] … S[f] − 1, causal.
// Query and output rows of sequence f start at row0[f] (stride H·hd). Parallel over (sequence, head).
void attention_decode(float* out, const float* q, const float* const* kv, const int* T, const int* S, const int* row0,
                      int F, int H, int hd);

// Fused softmax cross-entropy: turns logits[N,V] into dlogits in place, scaled by mask[n] * dscale
// (mask may be null = all ones). losses[n] gets each row's loss. Returns sum_n mask[n] * losses[n].
double crossentropy_forward_backward(float* logits, float* losses, const int32_t* targets, const float* mask, int N,
                                     int V, float dscale);

// PyTorch AdamW on one parameter tensor; g is multiplied by gscale (gradient clipping) first.
void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2, float eps, float wd,
           int t, float gscale);

// Rotary positions in place over rows [N] (row stride xs) of H heads of hd channels (hd even): row n at position
// pos[n % P]; sign +1 forward, -1 backward (rotates a gradient back).
void rope(float* x, int xs, int N, int H, int hd, const int32_t* pos, int P, float base, int sign);

void add(float* out, const float* a, const float* b, size_t n);       // out = a + b
void axpy(float* y, const float* x, float alpha, size_t n);           // y += alpha x
double sumsq(const float* x, size_t n);

}  // namespace retro
