#!/usr/bin/env bash
# The package as a user gets it: pack the project (prepack builds dist/), install the tarball into a scratch
# folder with production dependencies only (the addon is compiled by its install script), then run the CLI
# with npx, import the library, and run the native engine through the public API.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d /tmp/retro-package-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
npm pack --silent --pack-destination "$scratch" > /dev/null
tgz=$(ls "$scratch"/retro-ts-*.tgz)
mkdir "$scratch/app" && cd "$scratch/app"
npm init -y > /dev/null
ONNXRUNTIME_NODE_INSTALL=skip npm install --omit=dev --no-audit --no-fund --prefer-offline "$tgz" > install.log 2>&1 || { cat install.log; exit 1; }
[ ! -e node_modules/tsx ] || { echo "check-package: tsx was installed (it must not be needed)"; exit 1; }
npx retro --help | grep -q "retro \[options\] \[command\]"
[ -f node_modules/retro-ts/dist/serve/web/index.html ] || { echo "check-package: the chat page is not in the package"; exit 1; }
node --input-type=module -e '
import { loadEngine, Model, resolveModelConfig, corpusScore, SYSTEM_PROMPT } from "retro-ts";
const model = new Model(resolveModelConfig({ model: "gpt", vocab: 64, d: 16, heads: 2, layers: 1, seq: 8 }), { engine: loadEngine(), seed: 1 });
const n = 8, ids = Int32Array.from({ length: n }, (_, i) => i), r = model.forward({ B: 1, n, ids, targets: ids });
if (!(Math.abs(r.loss - Math.log(64)) < 0.2)) throw new Error(`untrained loss ${r.loss}, expected about ln 64`);
if (Math.abs(corpusScore([{ prediction: "x y", answers: ["y"] }]).f1 - 200 / 3) > 1e-9) throw new Error("metrics");
if (!SYSTEM_PROMPT.startsWith("This is a chat")) throw new Error("api");
console.log(`check-package: the installed retro-ts runs (engine loss ${r.loss.toFixed(3)})`);
'
