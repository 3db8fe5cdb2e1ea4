// Kernel checks: every backward kernel against central finite differences of its forward kernel, the matrix
// product against a naive loop (all transposes, both builds), AdamW against PyTorch's formula written out,
// and size checks that throw instead of reading past a buffer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadEngine, type Engine } from "../../src/engine/native.ts";
import { Rng } from "../../src/util/rng.ts";

const E = loadEngine();
const rng = new Rng(7);
const rand = (n: number, s = 1) => Float32Array.from({ length: n }, () => s * rng.normal());
const ints = (n: number, hi: number) => Int32Array.from({ length: n }, () => rng.int(hi));

/** L(x) = sum(forward(x) * R); checks dL/dx[i] from `analytic` against central differences at `probes` indices */
function checkGrad(
  name: string,
  x: Float32Array,
  loss: () => number,
  analytic: Float32Array,
  probes = 12,
  tol = 2e-2,
): void {
  const eps = 1e-2;
  let worst = 0;
  for (let p = 0; p < probes; p++) {
    const i = rng.int(x.length);
    const keep = x[i];
    x[i] = keep + eps;
    const up = loss();
    x[i] = keep - eps;
    const down = loss();
    x[i] = keep;
    const num = (up - down) / (2 * eps);
    const err = Math.abs(num - analytic[i]) / Math.max(1e-2, Math.abs(num) + Math.abs(analytic[i]));
    worst = Math.max(worst, err);
  }
  assert.ok(worst < tol, `${name}: finite-difference mismatch ${worst.toExponential(2)}`);
}
const dot = (a: Float32Array, b: Float32Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

test("gemm matches a naive product for every transpose, in both builds", () => {
  for (const kind of ["blas", "portable"] as const) {
    const e: Engine = loadEngine(kind);
    for (const [ta, tb] of [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
    ]) {
      const M = 37,
        N = 45,
        K = 300; // odd sizes: partial register tiles and a partial K block
      const A = rand(M * K),
        B = rand(K * N),
        C = rand(M * N);
      const C0 = C.slice();
      e.gemm(ta, tb, M, N, K, 0.5, A, ta ? M : K, B, tb ? K : N, 2, C, N);
      let worst = 0;
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += (ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
          worst = Math.max(worst, Math.abs(0.5 * s + 2 * C0[i * N + j] - C[i * N + j]));
        }
      assert.ok(worst < 1e-3, `${kind} ta=${ta} tb=${tb}: max error ${worst}`);
    }
  }
  // the split across threads is taken for large products; compare the two builds on one
  const M = 300,
    N = 700,
    K = 64;
  const A = rand(M * K),
    B = rand(N * K),
    C1 = new Float32Array(M * N),
    C2 = new Float32Array(M * N);
  loadEngine("blas").gemm(0, 1, M, N, K, 1, A, K, B, K, 0, C1, N);
  loadEngine("portable").gemm(0, 1, M, N, K, 1, A, K, B, K, 0, C2, N);
  let worst = 0;
  for (let i = 0; i < C1.length; i++) worst = Math.max(worst, Math.abs(C1[i] - C2[i]));
  assert.ok(worst < 1e-4, `builds differ by ${worst}`);
});

test("layernorm backward matches finite differences (input, weight, bias)", () => {
  const N = 5,
    C = 16;
  const x = rand(N * C),
    w = rand(C),
    b = rand(C),
    R = rand(N * C);
  const out = new Float32Array(N * C),
    mean = new Float32Array(N),
    rstd = new Float32Array(N);
  const loss = () => {
    E.layernormForward(out, mean, rstd, x, w, b, N, C);
    return dot(out, R);
  };
  loss();
  const dx = new Float32Array(N * C),
    dw = new Float32Array(C),
    db = new Float32Array(C);
  E.layernormBackward(dx, dw, db, R, x, w, mean, rstd, N, C, 0);
  checkGrad("layernorm dx", x, loss, dx);
  checkGrad("layernorm dw", w, loss, dw);
  checkGrad("layernorm db", b, loss, db);
});

test("linear backward matches finite differences; frozen (null) gradients are skipped", () => {
  const N = 6,
    IN = 10,
    OUT = 7;
  const x = rand(N * IN),
    W = rand(OUT * IN),
    b = rand(OUT),
    R = rand(N * OUT),
    out = new Float32Array(N * OUT);
  const loss = () => {
    E.linearForward(out, x, W, b, N, IN, OUT);
    return dot(out, R);
  };
  const dx = new Float32Array(N * IN),
    dW = new Float32Array(OUT * IN),
    db = new Float32Array(OUT);
  E.linearBackward(dx, dW, db, R, x, W, N, IN, OUT, 0);
  checkGrad("linear dx", x, loss, dx);
  checkGrad("linear dW", W, loss, dW);
  checkGrad("linear db", b, loss, db);
  const dx2 = new Float32Array(N * IN);
  E.linearBackward(dx2, null, null, R, x, W, N, IN, OUT, 0);
  assert.deepEqual(dx2, dx);
});

test("GELU (tanh) forward matches the formula and backward matches finite differences", () => {
  const n = 64;
  const x = rand(n, 3),
    R = rand(n),
    out = new Float32Array(n);
  E.geluForward(out, x, n);
  for (let i = 0; i < n; i++) {
    const v = x[i],
      ref = 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    assert.ok(Math.abs(out[i] - ref) < 1e-6, `gelu(${v}) = ${out[i]}, expected ${ref}`);
  }
  const loss = () => {
    E.geluForward(out, x, n);
    return dot(out, R);
  };
  const dx = new Float32Array(n);
  E.geluBackward(dx, x, R, n);
  checkGrad("gelu", x, loss, dx, 24);
});

for (const [label, causal, kvdiv, T, S] of [
  ["causal self", 1, 1, 9, 9],
  ["bidirectional", 0, 1, 7, 7],
  ["cross, 2 queries per key set", 0, 2, 5, 11],
] as const) {
  test(`attention (${label}) backward matches finite differences`, () => {
    const B = 4,
      H = 2,
      hd = 4,
      D = H * hd,
      BK = B / kvdiv;
    // q inside a wider row (stride 3D, offset D) and K/V packed in one [S, 2D] row, as the model lays them out
    const q = rand(B * T * 3 * D),
      kv = rand(BK * S * 2 * D),
      R = rand(B * T * D);
    const out = new Float32Array(B * T * D),
      probs = new Float32Array(B * H * T * S);
    const loss = () => {
      E.attentionForward(out, probs, q, D, 3 * D, kv, 0, D, 2 * D, B, T, S, H, hd, causal, kvdiv);
      return dot(out, R);
    };
    loss();
    if (causal)
      for (let i = 0; i < T; i++)
        for (let j = i + 1; j < S; j++) assert.equal(probs[i * S + j], 0, "future key visible");
    const dq = new Float32Array(q.length),
      dkv = new Float32Array(kv.length);
    E.attentionBackward(dq, dkv, R, probs, q, D, 3 * D, kv, 0, D, 2 * D, B, T, S, H, hd, kvdiv);
    checkGrad("attention dq", q, loss, dq, 24);
    checkGrad("attention dkv", kv, loss, dkv, 24);
    // entries of q outside the view get no gradient
    for (let r = 0; r < B * T; r++) for (let c = 0; c < D; c++) assert.equal(dq[r * 3 * D + c], 0);
  });
}

for (const [label, causal, kvdiv, T, S, qpos0] of [
  ["causal self, 3 query blocks", 1, 1, 150, 150, 0],
  ["bidirectional cross, 2 queries per key set", 0, 2, 70, 133, 0],
  ["causal, queries after a cache", 1, 1, 66, 200, 134],
] as const) {
  test(`attention without a [T, S] buffer (${label}) equals the probs kernel, forward and backward`, () => {
    const B = 2,
      H = 3,
      hd = 8,
      D = H * hd,
      BK = B / kvdiv;
    const q = rand(B * T * 2 * D),
      kv = rand(BK * S * 2 * D),
      R = rand(B * T * D);
    const out = new Float32Array(B * T * D),
      out2 = new Float32Array(B * T * D),
      probs = new Float32Array(B * H * T * S),
      lse = new Float32Array(B * H * T);
    E.attentionForward(out, probs, q, D, 2 * D, kv, 0, D, 2 * D, B, T, S, H, hd, causal, kvdiv, qpos0);
    E.attentionForwardLse(out2, lse, q, D, 2 * D, kv, 0, D, 2 * D, B, T, S, H, hd, causal, kvdiv, qpos0);
    // differences relative to the largest entry: the two kernels sum in different block shapes
    const close = (a: Float32Array, b: Float32Array, what: string) => {
      let worst = 0,
        top = 0;
      for (let i = 0; i < a.length; i++) {
        worst = Math.max(worst, Math.abs(a[i] - b[i]));
        top = Math.max(top, Math.abs(b[i]));
      }
      assert.ok(worst / top < 1e-5, `${what}: worst difference ${worst} of ${top}`);
    };
    close(out2, out, "out");
    // lse of row i of head h = log Σ_j exp(score): the probs kernel's row recovered from it
    const b = 1,
      h = 2,
      i = T - 1;
    const lim = causal ? Math.min(qpos0 + i + 1, S) : S;
    let z = 0;
    for (let j = 0; j < lim; j++) {
      let s2 = 0;
      for (let c = 0; c < hd; c++)
        s2 += q[(b * T + i) * 2 * D + D + h * hd + c] * kv[(Math.floor(b / kvdiv) * S + j) * 2 * D + h * hd + c];
      z += Math.exp(s2 / Math.sqrt(hd));
    }
    assert.ok(Math.abs(lse[(b * H + h) * T + i] - Math.log(z)) < 1e-4, "log-sum-exp of a row");
    if (qpos0 > 0) return; // the backward is training's: queries from position 0
    const dq = new Float32Array(q.length),
      dkv = new Float32Array(kv.length).fill(7), // overwritten, not accumulated into
      dq2 = new Float32Array(q.length),
      dkv2 = new Float32Array(kv.length).fill(7);
    E.attentionBackward(dq, dkv, R, probs, q, D, 2 * D, kv, 0, D, 2 * D, B, T, S, H, hd, kvdiv);
    E.attentionBackwardLse(dq2, dkv2, R, lse, q, D, 2 * D, kv, 0, D, 2 * D, B, T, S, H, hd, kvdiv, causal);
    close(dq2, dq, "dq");
    close(dkv2, dkv, "dkv");
  });
}

test("attentionDecode: sequences of their own caches in one call equal one attentionForward each", () => {
  const H = 3,
    hd = 8,
    D = H * hd;
  const T = Int32Array.from([1, 3, 1, 2]),
    S = Int32Array.from([5, 40, 1, 17]);
  const row0 = Int32Array.from([0, 1, 4, 5]);
  const rows = 7;
  const q = rand(rows * D),
    kvs = [...S].map((n) => rand(n * 2 * D + 5)); // caches may be longer than their S rows
  const out = new Float32Array(rows * D).fill(9);
  E.attentionDecode(out, q, kvs, T, S, row0, H, hd);
  for (let f = 0; f < T.length; f++) {
    const want = new Float32Array(T[f] * D),
      probs = new Float32Array(H * T[f] * S[f]);
    E.attentionForward(
      want,
      probs,
      q.subarray(row0[f] * D),
      0,
      D,
      kvs[f],
      0,
      D,
      2 * D,
      1,
      T[f],
      S[f],
      H,
      hd,
      1,
      1,
      S[f] - T[f],
    );
    const got = out.subarray(row0[f] * D, (row0[f] + T[f]) * D);
    for (let i = 0; i < want.length; i++)
      assert.ok(Math.abs(got[i] - want[i]) < 1e-5, `sequence ${f} [${i}]: ${got[i]} vs ${want[i]}`);
  }
  assert.throws(() => E.attentionDecode(out, q, [kvs[2], kvs[1], kvs[2], kvs[3]], T, S, row0, H, hd), /kvs\[0\] has/);
  assert.throws(() => E.attentionDecode(out, q, kvs, Int32Array.from([6, 1, 1, 1]), S, row0, H, hd), /0 < T <= S/);
});

test("attention without a [T, S] buffer: backward matches finite differences", () => {
  const B = 2,
    H = 2,
    hd = 4,
    D = H * hd,
    T = 67,
    S = 67;
  const q = rand(B * T * D),
    kv = rand(B * S * 2 * D),
    R = rand(B * T * D);
  const out = new Float32Array(B * T * D),
    lse = new Float32Array(B * H * T);
  const loss = () => {
    E.attentionForwardLse(out, lse, q, 0, D, kv, 0, D, 2 * D, B, T, S, H, hd, 1, 1);
    return dot(out, R);
  };
  loss();
  const dq = new Float32Array(q.length),
    dkv = new Float32Array(kv.length);
  E.attentionBackwardLse(dq, dkv, R, lse, q, 0, D, kv, 0, D, 2 * D, B, T, S, H, hd, 1, 1);
  checkGrad("attention (lse) dq", q, loss, dq, 24);
  checkGrad("attention (lse) dkv", kv, loss, dkv, 24);
});

test("embedding backward matches finite differences (repeated ids accumulate)", () => {
  const N = 12,
    T = 4,
    C = 6,
    V = 5;
  const ids = ints(N, V),
    wte = rand(V * C),
    wpe = rand(T * C),
    R = rand(N * C),
    out = new Float32Array(N * C);
  const loss = () => {
    E.embeddingForward(out, ids, wte, wpe, N, T, C, V);
    return dot(out, R);
  };
  const dwte = new Float32Array(V * C),
    dwpe = new Float32Array(T * C);
  E.embeddingBackward(dwte, dwpe, R, ids, N, T, C, V);
  checkGrad("embedding wte", wte, loss, dwte, 20);
  checkGrad("embedding wpe", wpe, loss, dwpe, 20);
});

test("masked softmax cross-entropy: loss by hand and gradient by finite differences", () => {
  const N = 4,
    V = 6;
  const logits = rand(N * V),
    targets = Int32Array.from([0, 5, 2, 2]),
    mask = Float32Array.from([1, 0, 1, 1]);
  const losses = new Float32Array(N);
  const lossOf = () => {
    const tmp = logits.slice();
    return E.crossentropy(tmp, losses, targets, mask, N, V, 1 / 3) / 3;
  };
  let ref = 0;
  for (let n = 0; n < N; n++) {
    const row = logits.subarray(n * V, (n + 1) * V);
    const lse = Math.log(row.reduce((s, v) => s + Math.exp(v), 0));
    ref += mask[n] * (lse - row[targets[n]]);
  }
  assert.ok(Math.abs(lossOf() - ref / 3) < 1e-5);
  const grad = logits.slice();
  E.crossentropy(grad, losses, targets, mask, N, V, 1 / 3);
  for (let i = V; i < 2 * V; i++) assert.equal(grad[i], 0, "masked row has a gradient");
  checkGrad("crossentropy", logits, lossOf, grad, 20);
});

test("AdamW equals PyTorch's update rule written out, with gradient scaling", () => {
  const n = 50;
  const p = rand(n),
    g = rand(n),
    m = rand(n, 0.1),
    v = rand(n, 0.1).map(Math.abs);
  const [lr, b1, b2, eps, wd, t, gs] = [1e-2, 0.9, 0.95, 1e-8, 0.1, 3, 0.5];
  const ref = Array.from(p, (pi, i) => {
    const gi = g[i] * gs,
      mi = b1 * m[i] + (1 - b1) * gi,
      vi = b2 * v[i] + (1 - b2) * gi * gi;
    return pi * (1 - lr * wd) - ((lr / (1 - b1 ** t)) * mi) / (Math.sqrt(vi) / Math.sqrt(1 - b2 ** t) + eps);
  });
  E.adamw(p, g, m, v, n, lr, b1, b2, eps, wd, t, gs);
  for (let i = 0; i < n; i++) assert.ok(Math.abs(p[i] - ref[i]) < 1e-6, `param ${i}: ${p[i]} vs ${ref[i]}`);
});

test("kernels refuse buffers too small for the dimensions given, and out-of-range ids", () => {
  const x = new Float32Array(10);
  assert.throws(
    () => E.layernormForward(x, x, x, new Float32Array(3), x, x, 2, 5),
    /layernormForward: argument 'inp' has 3 elements, needs 10/,
  );
  assert.throws(
    () => E.linearForward(new Float32Array(4), x, new Float32Array(15), null, 2, 5, 3),
    /argument 'out' has 4 elements, needs 6/,
  );
  assert.throws(
    () => E.embeddingForward(x, Int32Array.from([0, 9]), x, x, 2, 2, 1, 5),
    /holds id 9 at 1, outside \[0, 5\)/,
  );
  assert.throws(
    () => E.linearForward(x, new Int32Array(10) as unknown as Float32Array, x, null, 2, 5, 1),
    /must be a Float32Array/,
  );
  assert.throws(
    () => E.attentionForward(x, x, x, 0, 1, x, 0, 1, 2, 3, 1, 1, 1, 1, 0, 2),
    /B must be a multiple of kvdiv/,
  );
});

test("sumsq is the sum of squares, identical at 1 and 2 threads", () => {
  const x = rand(100001);
  let ref = 0;
  for (const v of x) ref += v * v;
  const t0 = E.getThreads();
  E.setThreads(1);
  const one = E.sumsq(x, x.length);
  E.setThreads(2);
  const two = E.sumsq(x, x.length);
  E.setThreads(t0);
  assert.ok(Math.abs(one - ref) / ref < 1e-12);
  assert.ok(Math.abs(two - ref) / ref < 1e-12);
});

test("bf16 products stay within bf16 rounding of fp32, and precision switches back", {
  skip: !E.bf16 && "this build has no AVX512-BF16",
}, () => {
  const M = 300,
    N = 200,
    K = 129; // odd K: a half-filled bf16 pair; sizes large enough to split across threads
  const A = rand(M * K),
    B = rand(N * K),
    C32 = new Float32Array(M * N),
    C16 = new Float32Array(M * N);
  E.gemm(0, 1, M, N, K, 1, A, K, B, K, 0, C32, N);
  E.setPrecision("bf16");
  try {
    assert.equal(E.getPrecision(), "bf16");
    E.gemm(0, 1, M, N, K, 1, A, K, B, K, 0, C16, N);
  } finally {
    E.setPrecision("fp32");
  }
  let worst = 0,
    diff = 0;
  for (let i = 0; i < C32.length; i++) {
    // |error| <= sum_k |a_k b_k| * 2^-8 (two roundings of 2^-9 each); sqrt(K) typical, K worst
    worst = Math.max(worst, Math.abs(C16[i] - C32[i]) / Math.sqrt(K));
    if (C16[i] !== C32[i]) diff++;
  }
  assert.ok(worst < 2 ** -8 * 4, `bf16 error ${worst}`);
  assert.ok(diff > C32.length / 2, "bf16 path not taken");
  const again = new Float32Array(M * N);
  E.gemm(0, 1, M, N, K, 1, A, K, B, K, 0, again, N);
  assert.deepEqual(again, C32);
  assert.throws(() => E.setPrecision("fp16" as "bf16"), /precision must be "fp32" or "bf16"/);
});

test("rope: rotation by hand at an offset and stride, backward = finite differences, round trip, bad arguments", () => {
  const N = 5,
    H = 2,
    hd = 6,
    stride = 17,
    off = 3,
    half = hd / 2,
    base = 10000;
  const pos = Int32Array.from([3, 0, 7]);
  const x = rand(N * stride);
  const y = x.slice();
  E.rope(y, off, stride, N, H, hd, pos, pos.length, base, 1);
  let worst = 0;
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < stride; c++) {
      const i = n * stride + c,
        j = c - off;
      if (j < 0 || j >= H * hd) {
        assert.equal(y[i], x[i], "channels outside the heads are untouched");
        continue;
      }
      const h = Math.floor(j / hd),
        q = j % hd,
        fr = q % half,
        a = pos[n % pos.length] * base ** (-fr / half);
      const x1 = x[n * stride + off + h * hd + fr],
        x2 = x[n * stride + off + h * hd + fr + half];
      const want = q < half ? x1 * Math.cos(a) - x2 * Math.sin(a) : x1 * Math.sin(a) + x2 * Math.cos(a);
      worst = Math.max(worst, Math.abs(y[i] - want));
    }
  }
  assert.ok(worst < 1e-5, `rotation by hand: ${worst}`);
  const back = y.slice();
  E.rope(back, off, stride, N, H, hd, pos, pos.length, base, -1);
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(back[i] - x[i]) < 1e-5, "sign -1 undoes sign 1");
  // backward: dL/dx of L = sum(rope(x) * R) is rope(R, sign -1)
  const R = rand(N * stride);
  const g = R.slice();
  E.rope(g, off, stride, N, H, hd, pos, pos.length, base, -1);
  const loss = () => {
    const t = x.slice();
    E.rope(t, off, stride, N, H, hd, pos, pos.length, base, 1);
    return dot(t, R);
  };
  checkGrad("rope", x, loss, g, 20, 1e-2);
  assert.throws(() => E.rope(x, off, stride, N, H, 5, pos, 3, base, 1), /hd must be even/);
  assert.throws(() => E.rope(x, 8, 16, N, H, hd, pos, 3, base, 1), /offset \/ stride/);
  assert.throws(() => E.rope(new Float32Array(10), off, stride, N, H, hd, pos, 3, base, 1), /elements, needs/);
  assert.throws(() => E.rope(x, off, stride, N, H, hd, pos, 4, base, 1), /'pos'/);
});

test(
  "linear forward: the few-rows path (decoding, N ≤ 16) and the gemm path (N > 16) equal a naive loop, both " +
    "builds",
  () => {
    for (const kind of ["portable", "blas"] as const) {
      const e = loadEngine(kind);
      for (const [N, IN, OUT, bias] of [
        [1, 256, 1030, true],
        [3, 48, 9, false],
        [5, 37, 13, true],
        [16, 64, 260, true],
        [17, 64, 33, true],
      ] as const) {
        const x = rand(N * IN),
          W = rand(OUT * IN),
          b = bias ? rand(OUT) : null,
          out = new Float32Array(N * OUT);
        e.linearForward(out, x, W, b, N, IN, OUT);
        let worst = 0;
        for (let n = 0; n < N; n++) {
          for (let o = 0; o < OUT; o++) {
            let s = b ? b[o] : 0;
            for (let i = 0; i < IN; i++) s += x[n * IN + i] * W[o * IN + i];
            worst = Math.max(worst, Math.abs(out[n * OUT + o] - s) / (1 + Math.abs(s)));
          }
        }
        assert.ok(worst < 1e-5, `${kind} N=${N} IN=${IN} OUT=${OUT}: ${worst}`);
      }
    }
  },
);
