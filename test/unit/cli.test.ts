/** The `retro` program itself: its version, and a usage error for an unknown command. */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { cli, ROOT } from "../helpers.ts";

test("retro --version prints the package's version; an unknown command is a usage error", () => {
  const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
  const r = cli(["--version"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), version);
  assert.equal(cli(["-V"]).stdout.trim(), version);
  assert.equal(cli(["no-such-command"]).code, 2);
});
