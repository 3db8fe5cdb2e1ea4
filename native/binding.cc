// N-API glue: each kernel takes Float32Array / Int32Array views (no copies) and integers, checks that
// every buffer is large enough for the dimensions given, and throws a RangeError naming the argument
// otherwise (a mismatched shape is an error, never a read past a buffer).
#include <napi.h>
#include <omp.h>

#include <string>
#include <vector>

#include "engine.h"

namespace {

struct Call {
  const Napi::CallbackInfo& info;
  const char* fn;
  Napi::Env env() const { return info.Env(); }

  [[noreturn]] void fail(const std::string& msg) const {
    throw Napi::RangeError::New(env(), std::string(fn) + ": " + msg);
  }
  long num(size_t i, const char* name) const {
    if (!info[i].IsNumber()) fail(std::string("argument '") + name + "' must be a number");
    double d = info[i].As<Napi::Number>().DoubleValue();
    if (d != (double)(long)d) fail(std::string("argument '") + name + "' must be an integer");
    return (long)d;
  }
  double real(size_t i, const char* name) const {
    if (!info[i].IsNumber()) fail(std::string("argument '") + name + "' must be a number");
    return info[i].As<Napi::Number>().DoubleValue();
  }
  template <typename T, napi_typedarray_type K>
  T* arr(size_t i, const char* name, size_t need, bool nullable) const {
    Napi::Value v = info[i];
    if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != K)
      fail(std::string("argument '") + name + "' must be a " + (K == napi_float32_array ? "Float32Array" : "Int32Array"));
    auto a = v.As<Napi::TypedArrayOf<T>>();
    if (a.ElementLength() < need)
      fail(std::string("argument '") + name + "' has " + std::to_string(a.ElementLength()) + " elements, needs " +
           std::to_string(need));
    return a.Data();
  }
  float* f(size_t i, const char* name, size_t need, bool nullable = false) const {
    return arr<float, napi_float32_array>(i, name, need, nullable);
  }
  int32_t* ids(size_t i, const char* name, size_t need, long below) const {
    int32_t* p = arr<int32_t, napi_int32_array>(i, name, need, false);
    for (size_t j = 0; j < need; j++)
      if (p[j] < 0 || p[j] >= below)
        fail(std::string("argument '") + name + "' holds id " + std::to_string(p[j]) + " at " + std::to_string(j) +
             ", outside [0, " + std::to_string(below) + ")");
    return p;
  }
  void positive(long v, const char* name) const {
    if (v <= 0) fail(std::string("dimension '") + name + "' must be positive");
  }
};

using Z = size_t;

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  Call c{info, "embeddingForward"};
  long N = c.num(4, "N"), T = c.num(5, "T"), C = c.num(6, "C"), V = c.num(7, "V");
  c.positive(N, "N"); c.positive(T, "T"); c.positive(C, "C"); c.positive(V, "V");
  float* out = c.f(0, "out", (Z)N * C);
  int32_t* ids = c.ids(1, "ids", N, V);
  float* wte = c.f(2, "wte", (Z)V * C);
  float* wpe = c.f(3, "wpe", (Z)std::min(N, T) * C);
  retro::embedding_forward(out, ids, wte, wpe, N, T, C);
  return info.Env().Undefined();
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  Call c{info, "embeddingBackward"};
  long N = c.num(4, "N"), T = c.num(5, "T"), C = c.num(6, "C"), V = c.num(7, "V");
  c.positive(N, "N"); c.positive(T, "T"); c.positive(C, "C"); c.positive(V, "V");
  float* dwte = c.f(0, "dwte", (Z)V * C);
  float* dwpe = c.f(1, "dwpe", (Z)std::min(N, T) * C);
  float* dout = c.f(2, "dout", (Z)N * C);
  int32_t* ids = c.ids(3, "ids", N, V);
  retro::embedding_backward(dwte, dwpe, dout, ids, N, T, C);
  return info.Env().Undefined();
}

Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  Call c{info, "layernormForward"};
  long N = c.num(6, "N"), C = c.num(7, "C");
  c.positive(N, "N"); c.positive(C, "C");
  retro::layernorm_forward(c.f(0, "out", (Z)N * C), c.f(1, "mean", N), c.f(2, "rstd", N), c.f(3, "inp", (Z)N * C),
                           c.f(4, "w", C), c.f(5, "b", C), N, C);
  return info.Env().Undefined();
}

Napi::Value LayernormBackward(const Napi::CallbackInfo& info) {
  Call c{info, "layernormBackward"};
  long N = c.num(8, "N"), C = c.num(9, "C"), acc = c.num(10, "accumulate");
  c.positive(N, "N"); c.positive(C, "C");
  retro::layernorm_backward(c.f(0, "dinp", (Z)N * C), c.f(1, "dw", C), c.f(2, "db", C), c.f(3, "dout", (Z)N * C),
                            c.f(4, "inp", (Z)N * C), c.f(5, "w", C), c.f(6, "mean", N), c.f(7, "rstd", N), N, C, acc);
  return info.Env().Undefined();
}

Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  Call c{info, "linearForward"};
  long N = c.num(4, "N"), IN = c.num(5, "IN"), OUT = c.num(6, "OUT");
  c.positive(N, "N"); c.positive(IN, "IN"); c.positive(OUT, "OUT");
  retro::linear_forward(c.f(0, "out", (Z)N * OUT), c.f(1, "inp", (Z)N * IN), c.f(2, "W", (Z)OUT * IN),
                        c.f(3, "bias", OUT, true), N, IN, OUT);
  return info.Env().Undefined();
}

Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  Call c{info, "linearBackward"};
  long N = c.num(6, "N"), IN = c.num(7, "IN"), OUT = c.num(8, "OUT"), acc = c.num(9, "accumulate");
  c.positive(N, "N"); c.positive(IN, "IN"); c.positive(OUT, "OUT");
  retro::linear_backward(c.f(0, "dinp", (Z)N * IN, true), c.f(1, "dW", (Z)OUT * IN, true), c.f(2, "db", OUT, true),
                         c.f(3, "dout", (Z)N * OUT), c.f(4, "inp", (Z)N * IN), c.f(5, "W", (Z)OUT * IN), N, IN, OUT,
                         acc);
  return info.Env().Undefined();
}

Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  Call c{info, "geluForward"};
  long n = c.num(2, "n");
  c.positive(n, "n");
  retro::gelu_forward(c.f(0, "out", n), c.f(1, "inp", n), n);
  return info.Env().Undefined();
}

Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  Call c{info, "geluBackward"};
  long n = c.num(3, "n");
  c.positive(n, "n");
  retro::gelu_backward(c.f(0, "dinp", n), c.f(1, "inp", n), c.f(2, "dout", n), n);
  return info.Env().Undefined();
}

// The q / kv arguments shared by both attention functions, starting at argument `qi`:
// q, qOffset, qStride, kv, kOffset, vOffset, kvStride, B, T, S, H, hd; kvdiv at argument `kdi`.
// q / k / v are views at an offset inside a packed projection buffer (e.g. K then V in one [S, 2D] row).
struct AttnArgs {
  long qo, qs, ko, vo, kvs, B, T, S, H, hd, kvdiv, D;
  float* q;
  float* kv;
};

AttnArgs attnArgs(const Call& c, size_t qi, size_t kdi) {
  AttnArgs a;
  a.qo = c.num(qi + 1, "qOffset"); a.qs = c.num(qi + 2, "qStride"); a.ko = c.num(qi + 4, "kOffset");
  a.vo = c.num(qi + 5, "vOffset"); a.kvs = c.num(qi + 6, "kvStride"); a.B = c.num(qi + 7, "B"); a.T = c.num(qi + 8, "T");
  a.S = c.num(qi + 9, "S"); a.H = c.num(qi + 10, "H"); a.hd = c.num(qi + 11, "hd"); a.kvdiv = c.num(kdi, "kvdiv");
  c.positive(a.B, "B"); c.positive(a.T, "T"); c.positive(a.S, "S"); c.positive(a.H, "H"); c.positive(a.hd, "hd");
  c.positive(a.kvdiv, "kvdiv");
  if (a.B % a.kvdiv) c.fail("B must be a multiple of kvdiv");
  a.D = a.H * a.hd;
  if (a.qs < a.qo + a.D || a.kvs < std::max(a.ko, a.vo) + a.D || a.qo < 0 || a.ko < 0 || a.vo < 0) c.fail("offsets / strides do not fit");
  a.q = c.f(qi, "q", (Z)a.B * a.T * a.qs);
  a.kv = c.f(qi + 3, "kv", (Z)(a.B / a.kvdiv) * a.S * a.kvs);
  return a;
}

// attentionForward(out, probs, q, qOffset, qs, kv, kOffset, vOffset, kvs, B, T, S, H, hd, causal, kvdiv[, qpos0]);
// attentionForwardLse: the same arguments with lse [B, H, T] in place of probs [B, H, T, S]
template <bool LSE>
Napi::Value AttentionForwardT(const Napi::CallbackInfo& info) {
  Call c{info, LSE ? "attentionForwardLse" : "attentionForward"};
  AttnArgs a = attnArgs(c, 2, 15);
  long causal = c.num(14, "causal");
  long qpos0 = info.Length() > 16 && !info[16].IsUndefined() ? c.num(16, "qpos0") : 0;
  if (qpos0 < 0) c.fail("qpos0 must be >= 0");
  if (causal && qpos0 + a.T > a.S) c.fail("causal attention: qpos0 + T exceeds S (a query would see keys that are not there)");
  float* out = c.f(0, "out", (Z)a.B * a.T * a.D);
  float* saved = c.f(1, LSE ? "lse" : "probs", (Z)a.B * a.H * a.T * (LSE ? 1 : a.S));
  (LSE ? retro::attention_forward_lse : retro::attention_forward)(out, saved, a.q + a.qo, a.qs, a.kv + a.ko, a.kv + a.vo,
                                                                  a.kvs, a.B, a.T, a.S, a.H, a.hd, causal, a.kvdiv,
                                                                  (int)qpos0);
  return info.Env().Undefined();
}

// attentionBackward(dq, dkv, dout, probs, q, qOffset, qs, kv, kOffset, vOffset, kvs, B, T, S, H, hd, kvdiv);
// attentionBackwardLse: lse in place of probs, and causal after kvdiv
template <bool LSE>
Napi::Value AttentionBackwardT(const Napi::CallbackInfo& info) {
  Call c{info, LSE ? "attentionBackwardLse" : "attentionBackward"};
  AttnArgs a = attnArgs(c, 4, 16);
  long causal = LSE ? c.num(17, "causal") : 0;
  if (causal && a.T > a.S) c.fail("causal attention: T exceeds S");
  float* dq = c.f(0, "dq", (Z)a.B * a.T * a.qs);
  float* dkv = c.f(1, "dkv", (Z)(a.B / a.kvdiv) * a.S * a.kvs);
  float* dout = c.f(2, "dout", (Z)a.B * a.T * a.D);
  float* saved = c.f(3, LSE ? "lse" : "probs", (Z)a.B * a.H * a.T * (LSE ? 1 : a.S));
  if (LSE)
    retro::attention_backward_lse(dq + a.qo, dkv + a.ko, dkv + a.vo, dout, saved, a.q + a.qo, a.qs, a.kv + a.ko,
                                  a.kv + a.vo, a.kvs, a.B, a.T, a.S, a.H, a.hd, causal, a.kvdiv);
  else
    retro::attention_backward(dq + a.qo, dkv + a.ko, dkv + a.vo, dout, saved, a.q + a.qo, a.qs, a.kv + a.ko,
                              a.kv + a.vo, a.kvs, a.B, a.T, a.S, a.H, a.hd, a.kvdiv);
  return info.Env().Undefined();
}

// attentionDecode(out, q, kvs: Float32Array[], T: Int32Array, S: Int32Array, row0: Int32Array, H, hd)
Napi::Value AttentionDecode(const Napi::CallbackInfo& info) {
  Call c{info, "attentionDecode"};
  long H = c.num(6, "H"), hd = c.num(7, "hd");
  c.positive(H, "H"); c.positive(hd, "hd");
  if (!info[2].IsArray()) c.fail("argument 'kvs' must be an array of Float32Array");
  Napi::Array list = info[2].As<Napi::Array>();
  const long F = list.Length();
  c.positive(F, "number of sequences");
  int32_t* T = c.arr<int32_t, napi_int32_array>(3, "T", F, false);
  int32_t* S = c.arr<int32_t, napi_int32_array>(4, "S", F, false);
  int32_t* row0 = c.arr<int32_t, napi_int32_array>(5, "row0", F, false);
  const long D = H * hd;
  std::vector<const float*> kv(F);
  long rows = 0;
  for (long f = 0; f < F; f++) {
    if (T[f] <= 0 || S[f] < T[f] || row0[f] < 0) c.fail("each sequence needs 0 < T <= S and row0 >= 0");
    rows = std::max(rows, (long)row0[f] + T[f]);
    Napi::Value v = list.Get((uint32_t)f);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      c.fail("argument 'kvs' must hold Float32Arrays");
    auto a = v.As<Napi::Float32Array>();
    if (a.ElementLength() < (Z)S[f] * 2 * D)
      c.fail("kvs[" + std::to_string(f) + "] has " + std::to_string(a.ElementLength()) + " elements, needs " +
             std::to_string((Z)S[f] * 2 * D));
    kv[f] = a.Data();
  }
  float* out = c.f(0, "out", (Z)rows * D);
  float* q = c.f(1, "q", (Z)rows * D);
  retro::attention_decode(out, q, kv.data(), T, S, row0, F, H, hd);
  return info.Env().Undefined();
}

// crossentropy(logits -> dlogits in place, losses, targets, mask|null, N, V, dscale) -> sum of masked losses
Napi::Value Crossentropy(const Napi::CallbackInfo& info) {
  Call c{info, "crossentropy"};
  long N = c.num(4, "N"), V = c.num(5, "V");
  c.positive(N, "N"); c.positive(V, "V");
  double dscale = c.real(6, "dscale");
  double total = retro::crossentropy_forward_backward(c.f(0, "logits", (Z)N * V), c.f(1, "losses", N),
                                                      c.ids(2, "targets", N, V), c.f(3, "mask", N, true), N, V,
                                                      (float)dscale);
  return Napi::Number::New(info.Env(), total);
}

// adamw(p, g, m, v, n, lr, b1, b2, eps, wd, t, gscale)
Napi::Value Adamw(const Napi::CallbackInfo& info) {
  Call c{info, "adamw"};
  long n = c.num(4, "n"), t = c.num(10, "t");
  c.positive(n, "n"); c.positive(t, "t");
  retro::adamw(c.f(0, "p", n), c.f(1, "g", n), c.f(2, "m", n), c.f(3, "v", n), n, c.real(5, "lr"), c.real(6, "b1"),
               c.real(7, "b2"), c.real(8, "eps"), c.real(9, "wd"), t, c.real(11, "gscale"));
  return info.Env().Undefined();
}

// rope(x, offset, stride, N, H, hd, pos, P, base, sign): rotates x[n * stride + offset ...] in place
Napi::Value Rope(const Napi::CallbackInfo& info) {
  Call c{info, "rope"};
  long off = c.num(1, "offset"), xs = c.num(2, "stride"), N = c.num(3, "N"), H = c.num(4, "H"), hd = c.num(5, "hd");
  long P = c.num(7, "P"), sign = c.num(9, "sign");
  c.positive(N, "N"); c.positive(H, "H"); c.positive(hd, "hd"); c.positive(P, "P");
  if (hd % 2) c.fail("hd must be even");
  if (off < 0 || xs < off + H * hd) c.fail("offset / stride do not fit");
  if (sign != 1 && sign != -1) c.fail("sign must be 1 or -1");
  double base = c.real(8, "base");
  if (!(base > 1)) c.fail("base must be > 1");
  float* x = c.f(0, "x", (Z)(N - 1) * xs + off + H * hd);
  int32_t* pos = c.arr<int32_t, napi_int32_array>(6, "pos", P, false);
  retro::rope(x + off, xs, N, H, hd, pos, P, (float)base, sign);
  return info.Env().Undefined();
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  Call c{info, "add"};
  long n = c.num(3, "n");
  c.positive(n, "n");
  retro::add(c.f(0, "out", n), c.f(1, "a", n), c.f(2, "b", n), n);
  return info.Env().Undefined();
}

Napi::Value Axpy(const Napi::CallbackInfo& info) {
  Call c{info, "axpy"};
  long n = c.num(3, "n");
  c.positive(n, "n");
  retro::axpy(c.f(0, "y", n), c.f(1, "x", n), c.real(2, "alpha"), n);
  return info.Env().Undefined();
}

Napi::Value Sumsq(const Napi::CallbackInfo& info) {
  Call c{info, "sumsq"};
  long n = c.num(1, "n");
  if (n < 0) c.fail("n must be >= 0");
  return Napi::Number::New(info.Env(), retro::sumsq(c.f(0, "x", n), n));
}

// gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc): the raw product, for tests and benchmarks
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Call c{info, "gemm"};
  bool ta = c.num(0, "ta"), tb = c.num(1, "tb");
  long M = c.num(2, "M"), N = c.num(3, "N"), K = c.num(4, "K"), lda = c.num(7, "lda"), ldb = c.num(9, "ldb"),
       ldc = c.num(12, "ldc");
  c.positive(M, "M"); c.positive(N, "N"); c.positive(K, "K");
  if (lda < (ta ? M : K) || ldb < (tb ? K : N) || ldc < N) c.fail("leading dimension too small");
  float* A = c.f(6, "A", (Z)(ta ? K : M) * lda);
  float* B = c.f(8, "B", (Z)(tb ? N : K) * ldb);
  float* C = c.f(11, "C", (Z)M * ldc);
  retro::gemm(ta, tb, M, N, K, c.real(5, "alpha"), A, lda, B, ldb, c.real(10, "beta"), C, ldc);
  return info.Env().Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Call c{info, "setThreads"};
  long n = c.num(0, "n");
  c.positive(n, "n");
  omp_set_num_threads(n);
  return info.Env().Undefined();
}

// setPrecision("fp32" | "bf16"): the precision of the linear layers' products (attention stays fp32)
Napi::Value SetPrecision(const Napi::CallbackInfo& info) {
  Call c{info, "setPrecision"};
  if (!info[0].IsString()) c.fail("precision must be \"fp32\" or \"bf16\"");
  std::string p = info[0].As<Napi::String>().Utf8Value();
  if (p != "fp32" && p != "bf16") c.fail("precision must be \"fp32\" or \"bf16\", got \"" + p + "\"");
  if (!retro::set_bf16(p == "bf16")) c.fail("bf16 needs a CPU with AVX512-BF16 (this build has none)");
  return info.Env().Undefined();
}

Napi::Value GetPrecision(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), retro::get_bf16() ? "bf16" : "fp32");
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), omp_get_max_threads()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  retro::gemm_init();
  exports.Set("backend", Napi::String::New(env, retro::gemm_backend()));
  exports.Set("embeddingForward", Napi::Function::New(env, EmbeddingForward));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward));
  exports.Set("layernormForward", Napi::Function::New(env, LayernormForward));
  exports.Set("layernormBackward", Napi::Function::New(env, LayernormBackward));
  exports.Set("linearForward", Napi::Function::New(env, LinearForward));
  exports.Set("linearBackward", Napi::Function::New(env, LinearBackward));
  exports.Set("geluForward", Napi::Function::New(env, GeluForward));
  exports.Set("geluBackward", Napi::Function::New(env, GeluBackward));
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForwardT<false>));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackwardT<false>));
  exports.Set("attentionDecode", Napi::Function::New(env, AttentionDecode));
  exports.Set("attentionForwardLse", Napi::Function::New(env, AttentionForwardT<true>));
  exports.Set("attentionBackwardLse", Napi::Function::New(env, AttentionBackwardT<true>));
  exports.Set("crossentropy", Napi::Function::New(env, Crossentropy));
  exports.Set("adamw", Napi::Function::New(env, Adamw));
  exports.Set("rope", Napi::Function::New(env, Rope));
  exports.Set("add", Napi::Function::New(env, Add));
  exports.Set("axpy", Napi::Function::New(env, Axpy));
  exports.Set("sumsq", Napi::Function::New(env, Sumsq));
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("setPrecision", Napi::Function::New(env, SetPrecision));
  exports.Set("getPrecision", Napi::Function::New(env, GetPrecision));
  exports.Set("bf16", Napi::Boolean::New(env, retro::bf16_available()));
  return exports;
}

}  // namespace

NODE_API_MODULE(retro_engine, Init)
