// npm's install step for retro-ts. The package ships a prebuilt engine for linux-x64 (glibc) in
// prebuilds/linux-x64{,-v4}/ (scripts/prebuild.sh, run by prepack): when it loads on this machine nothing is compiled.
// Otherwise — another platform, an older glibc, RETRO_BUILD_FROM_SOURCE=1, or a source checkout (no prebuilds/) —
// the engine is compiled with node-gyp (needs g++ and make; OpenBLAS optional).
//
// Written here rather than with node-gyp-build: the package has two addons (retro_engine with OpenBLAS,
// retro_engine_portable), and node-gyp-build / prebuildify load and pack one addon per package.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

const root = path.join(__dirname, "..");
const { prebuiltDirs } = require("./prebuilt-dirs.cjs");
const prebuilt = prebuiltDirs(root).map((d) => path.join(d, "retro_engine_portable.node")).find((f) => fs.existsSync(f));

// a source checkout (src/ is not in the package) always compiles: its developers want -march=native and their edits
const checkout = fs.existsSync(path.join(root, "src"));
if (!process.env.RETRO_BUILD_FROM_SOURCE && !checkout && prebuilt) {
  // load it in a child: a binary that does not fit (glibc, CPU) must not take this process down
  const probe = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(prebuilt)}).setThreads(1)`], { encoding: "utf8" });
  if (probe.status === 0) {
    console.log(`retro-ts: using the prebuilt engine (${path.relative(root, prebuilt)}); nothing to compile`);
    process.exit(0);
  }
  const why = (probe.stderr || "").trim().split("\n").find((l) => /Error|error/.test(l)) || `exit ${probe.status}`;
  console.log(`retro-ts: the prebuilt engine does not load here (${why}); compiling from source`);
}
const r = spawnSync("node-gyp", ["rebuild"], { cwd: root, stdio: "inherit", shell: process.platform === "win32" });
if (r.error) {
  console.error(`retro-ts: cannot run node-gyp (${r.error.message}): run this through npm (npm run build:native in a checkout, npm rebuild retro-ts in a project); the engine needs a prebuilt binary, or g++ and make`);
  process.exit(1);
}
process.exit(r.status ?? 1);
