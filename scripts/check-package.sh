#!/usr/bin/env bash
# The package as a user gets it: pack the project (prepack builds dist/ and the prebuilt engine), install the tarball
# into a scratch folder with production dependencies only and NO compiler — CC and CXX point at a program that
# fails, and g++, gcc, cc, c++ and make on the PATH are that program too — then run the CLI with npx, import the
# library, and train a few steps on the native engine through the public API.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d /tmp/retro-package-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
npm pack --silent --pack-destination "$scratch" > /dev/null
tgz=$(ls "$scratch"/retro-ts-*.tgz)
tar -tzf "$tgz" > "$scratch/files.txt"
grep -q "package/prebuilds/linux-x64/retro_engine_portable.node" "$scratch/files.txt" || { echo "check-package: no prebuilt engine in the tarball"; exit 1; }
mkdir "$scratch/app" "$scratch/nocc" && cd "$scratch/app"
printf '#!/bin/sh\necho "check-package: a compiler was called: $0 $*" >&2\nexit 1\n' > "$scratch/nocc/fail"
chmod +x "$scratch/nocc/fail"
for t in g++ gcc cc c++ make; do ln -s fail "$scratch/nocc/$t"; done
npm init -y > /dev/null
PATH="$scratch/nocc:$PATH" CC="$scratch/nocc/fail" CXX="$scratch/nocc/fail" ONNXRUNTIME_NODE_INSTALL=skip \
  npm install --omit=dev --no-audit --no-fund --prefer-offline --foreground-scripts "$tgz" > install.log 2>&1 || { cat install.log; exit 1; }
grep -q "retro-ts: using the prebuilt engine" install.log || { cat install.log; echo "check-package: the prebuilt engine was not used"; exit 1; }
! grep -q "a compiler was called" install.log || { cat install.log; exit 1; }
[ ! -e node_modules/retro-ts/build ] || { echo "check-package: something was compiled into build/"; exit 1; }
[ ! -e node_modules/tsx ] || { echo "check-package: tsx was installed (it must not be needed)"; exit 1; }
npx retro --help | grep -q "retro \[options\] \[command\]"
[ "$(npx retro --version)" = "$(node -p "require('./node_modules/retro-ts/package.json').version")" ] || { echo "check-package: retro --version"; exit 1; }
[ -f node_modules/retro-ts/dist/serve/web/index.html ] || { echo "check-package: the chat page is not in the package"; exit 1; }
node --input-type=module -e '
import { loadEngine, Model, AdamW, resolveModelConfig, corpusScore, SYSTEM_PROMPT } from "retro-ts";
const engine = loadEngine();
const model = new Model(resolveModelConfig({ model: "gpt", vocab: 64, d: 32, heads: 2, layers: 1, seq: 16 }), { engine, seed: 1 });
const opt = new AdamW(model);
const n = 16, ids = Int32Array.from({ length: 2 * n }, (_, i) => (i * 7) % 64), targets = ids.map((t) => (t + 1) % 64);
const batch = { B: 2, n, ids, targets };
let first = 0, last = 0;
for (let s = 0; s < 20; s++) {
  model.zeroGrad();
  const { loss } = model.forward(batch);
  model.backward();
  opt.step(1e-2);
  if (s === 0) first = loss;
  last = loss;
}
if (!(Math.abs(first - Math.log(64)) < 0.3)) throw new Error(`untrained loss ${first}, expected about ln 64`);
if (!(last < first - 1)) throw new Error(`20 training steps took the loss from ${first} only to ${last}`);
if (Math.abs(corpusScore([{ prediction: "x y", answers: ["y"] }]).f1 - 200 / 3) > 1e-9) throw new Error("metrics");
if (!SYSTEM_PROMPT.startsWith("This is a chat")) throw new Error("api");
// every prebuilt variant this CPU runs: its gemm against a naive product (odd sizes: partial tiles and K block)
import { createRequire } from "node:module";
import * as fs from "node:fs";
const req = createRequire(import.meta.url), pre = "node_modules/retro-ts/prebuilds";
const flags = /^flags\s*:(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))[1].split(/\s+/);
for (const dir of fs.readdirSync(pre)) {
  if (dir.endsWith("-v4") && !flags.includes("avx512f")) continue;
  const e = req(`${process.cwd()}/${pre}/${dir}/retro_engine_portable.node`);
  const M = 37, N = 45, K = 300, rnd = (n) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
  for (const [ta, tb] of [[0, 0], [0, 1], [1, 0], [1, 1]]) {
    const A = rnd(M * K), B = rnd(K * N).reverse(), C = rnd(M * N), C0 = C.slice();
    e.gemm(ta, tb, M, N, K, 0.5, A, ta ? M : K, B, tb ? K : N, 2, C, N);
    let worst = 0;
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
      worst = Math.max(worst, Math.abs(0.5 * s + 2 * C0[i * N + j] - C[i * N + j]));
    }
    if (!(worst < 1e-3)) throw new Error(`prebuilt ${dir}: gemm ta=${ta} tb=${tb} max error ${worst}`);
  }
  console.log(`check-package: prebuilt ${dir} gemm equals the naive product`);
}
console.log(`check-package: installed without a compiler; the prebuilt ${engine.backend} engine trains (loss ${first.toFixed(3)} → ${last.toFixed(3)} in 20 steps)`);
'
