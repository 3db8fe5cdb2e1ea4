// The package's prebuilt engine folders for this machine, best first: prebuilds/linux-x64-v4 (AVX-512) where the CPU
// has it, then prebuilds/linux-x64 (AVX2 + FMA). One rule for the install script (install.cjs, plain Node, no
// TypeScript at install time) and the loader (src/engine/native.ts), which both require this file.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const AVX512 = ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"];

function prebuiltDirs(root) {
  const base = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);
  let v4 = false;
  if (process.platform === "linux" && process.arch === "x64") {
    try {
      const flags = (/^flags\s*:(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8")) || [undefined, ""])[1].split(/\s+/);
      v4 = AVX512.every((f) => flags.includes(f));
    } catch {
      v4 = false;
    }
  }
  return v4 ? [`${base}-v4`, base] : [base];
}

module.exports = { prebuiltDirs };
