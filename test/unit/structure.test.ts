/**
 * The structure rule (.dependency-cruiser.cjs): the source tree has no import cycle and no import from a later room,
 * and the rule file does catch both — planted in a scratch tree checked with the same rule file.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { ROOT, tmpDir } from "../helpers.ts";

const RULES = path.join(ROOT, ".dependency-cruiser.cjs");
const depcruise = (cwd: string) =>
  spawnSync(
    process.execPath,
    [path.join(ROOT, "node_modules", "dependency-cruiser", "bin", "dependency-cruise.mjs"), "src", "--config", RULES],
    { cwd, encoding: "utf8" },
  );

test("src/ has no import cycles and no upward imports", () => {
  const r = depcruise(ROOT);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /no dependency violations found/);
});

test("the rule file fails on a planted cycle, an upward import and a folder that is no room", () => {
  const dir = tmpDir("retro-structure-");
  fs.copyFileSync(path.join(ROOT, "tsconfig.json"), path.join(dir, "tsconfig.json"));
  const put = (f: string, text: string) => (
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true }), fs.writeFileSync(path.join(dir, f), text)
  );
  put("src/db/a.ts", 'import { b } from "./b.ts";\nexport const a = () => b;\n');
  put("src/db/b.ts", 'import { a } from "./a.ts";\nexport const b = () => a;\n');
  put("src/util/low.ts", 'import { c } from "../cli/top.ts";\nexport const low = c;\n');
  put("src/cli/top.ts", "export const c = 1;\n");
  put("src/misc/x.ts", "export const x = 1;\n");
  put("src/db/uses-misc.ts", 'import { x } from "../misc/x.ts";\nexport const y = x;\n');
  const r = depcruise(dir);
  assert.notEqual(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /no-circular: src\/db\/a\.ts/);
  assert.match(r.stdout, /no-upward-from-util: src\/util\/low\.ts → src\/cli\/top\.ts/);
  assert.match(r.stdout, /no-unknown-room: src\/db\/uses-misc\.ts → src\/misc\/x\.ts/);
  // the same tree without them passes
  for (const f of ["src/db/b.ts", "src/util/low.ts", "src/db/uses-misc.ts"]) fs.rmSync(path.join(dir, f));
  put("src/db/a.ts", "export const a = 1;\n");
  const ok = depcruise(dir);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
});

test("no line of src/ is over 120 characters (Biome formats to 120 but cannot break a string)", () => {
  const long: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ts$/.test(e.name))
        fs.readFileSync(p, "utf8")
          .split("\n")
          .forEach((l, i) => {
            if ([...l].length > 120) long.push(`${path.relative(ROOT, p)}:${i + 1}`);
          });
    }
  };
  walk(path.join(ROOT, "src"));
  assert.deepEqual(long, []);
});
