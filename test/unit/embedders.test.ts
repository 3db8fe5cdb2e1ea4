import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { autoMinDf, fitLsa, LsaEmbedder, symmetricEigen } from "../../src/embed/lsa.ts";
import { fitIdf, LexicalEmbedder } from "../../src/embed/lexical.ts";
import { ROOT } from "../helpers.ts";

test("Jacobi eigensolver: eigenpairs of a known symmetric matrix", () => {
  // A = [[2,1,0],[1,2,0],[0,0,5]]: eigenvalues 5, 3, 1; eigenvector of 3 is (1,1,0)/√2
  const { values, vectors } = symmetricEigen(Float64Array.from([2, 1, 0, 1, 2, 0, 0, 0, 5]), 3);
  assert.deepEqual(
    Array.from(values).map((v) => +v.toFixed(10)),
    [5, 3, 1],
  );
  const v3 = [vectors[1], vectors[4], vectors[7]].map(Math.abs);
  for (const [got, want] of v3.map((g, i) => [g, [Math.SQRT1_2, Math.SQRT1_2, 0][i]]))
    assert.ok(Math.abs(got - want) < 1e-9);
});

function mobyParagraphs(n: number): string[] {
  const dir = path.join(ROOT, "node_modules", "@stdlib", "datasets-moby-dick", "data");
  const out: string[] = [];
  for (let i = 1; out.length < n; i++)
    out.push(
      ...fs
        .readFileSync(path.join(dir, `chapter_${i}.txt`), "utf8")
        .split(/\n\s*\n/)
        .filter((p) => p.length > 200),
    );
  return out.slice(0, n);
}

test("LSA: the projection's columns are orthonormal (truncated SVD), embeddings unit-norm and topical", async () => {
  const texts = mobyParagraphs(400);
  const dim = 24;
  const st = fitLsa(texts, dim, { seed: 3 });
  const V = st.vocab.length;
  for (let i = 0; i < dim; i++)
    for (let j = i; j < dim; j++) {
      let s = 0;
      for (let v = 0; v < V; v++) s += st.proj[v * dim + i] * st.proj[v * dim + j];
      assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 2e-3, `VᵀV[${i},${j}] = ${s}`);
    }
  const emb = new LsaEmbedder(st);
  const e = await emb.embed([
    "the whale spouted and the harpooneer darted his harpoon at the whale",
    "the harpoon struck the whale; the whale sounded",
    "the landlord of the inn gave me a bed and supper",
  ]);
  const dot = (a: number, b: number) =>
    e.subarray(a * dim, a * dim + dim).reduce((s, x, k) => s + x * e[b * dim + k], 0);
  assert.ok(Math.abs(dot(0, 0) - 1) < 1e-5);
  assert.ok(dot(0, 1) > dot(0, 2), `whale/whale ${dot(0, 1)} should beat whale/inn ${dot(0, 2)}`);
});

test("LSA vocabulary floor scales with the corpus: a small sample keeps words seen once; minDf sets it", () => {
  const texts = ["bees make honey from nectar", "the mercator projection of the globe", "the glassblower and the pipe"];
  const auto = fitLsa(texts, 2, { seed: 1 });
  assert.ok(auto.vocab.includes("mercator") && auto.vocab.includes("honey"), "words in one chunk kept");
  const two = fitLsa(texts, 2, { seed: 1, minDf: 2 });
  assert.deepEqual(two.vocab, ["the"]);
  assert.equal(autoMinDf(100), 1);
  assert.equal(autoMinDf(50_000), 2);
});

test("lexical embedder: identical texts match exactly, shared rare words beat shared stopwords", async () => {
  const texts = mobyParagraphs(300);
  const emb = new LexicalEmbedder(256, fitIdf(texts));
  const e = await emb.embed([
    "Queequeg the harpooneer",
    "Queequeg the harpooneer",
    "the harpooneer Queequeg slept",
    "the and of the",
  ]);
  const dot = (a: number, b: number) =>
    e.subarray(a * 256, a * 256 + 256).reduce((s, x, k) => s + x * e[b * 256 + k], 0);
  assert.ok(Math.abs(dot(0, 1) - 1) < 1e-6);
  assert.ok(dot(0, 2) > dot(0, 3));
});
