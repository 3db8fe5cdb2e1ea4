/**
 * The update journal of `retro db add` (see add.ts): the renames that move an update's staged files into place
 * and the manifest that describes the result. Written atomically after every staged file exists; rolled
 * forward by the next writer or reader, so a crash leaves the database before or after the update.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { readJson, writeJsonAtomic } from "../util/fsx.ts";
import { log } from "../util/progress.ts";
import type { Manifest } from "./manifest.ts";

export const JOURNAL = "update.journal.json";
export const STAGED = ".update";

export interface Journal {
  /** [staged, final] pairs; a final folder is replaced whole */
  renames: [string, string][];
  manifest: Manifest;
}

/**
 * Finish an update whose journal was written (renames are idempotent); sweep staging files of one that was not.
 * `commit`: the writer's own commit step (no "interrupted" message); otherwise a reader or the next writer rolling
 * forward the update of a process that died after its journal.
 */
export function recoverUpdate(dir: string, o: { commit?: boolean } = {}): boolean {
  const jf = path.join(dir, JOURNAL);
  if (!fs.existsSync(jf)) {
    for (const p of [path.join(dir, "tokens"), dir, path.join(dir, "index")]) {
      if (!fs.existsSync(p)) continue;
      // staged files and folders, and the temp files of staged files a killed add was still writing
      for (const f of fs.readdirSync(p))
        if (f.endsWith(STAGED) || (f.includes(`${STAGED}.`) && f.endsWith(".tmp")))
          fs.rmSync(path.join(p, f), { recursive: true, force: true });
    }
    return false;
  }
  const j = readJson<Journal>(jf, "update journal");
  for (const [from, to] of j.renames) {
    const a = path.join(dir, from),
      b = path.join(dir, to);
    if (!fs.existsSync(a)) continue; // moved already
    if (fs.existsSync(b) && fs.statSync(b).isDirectory()) fs.rmSync(b, { recursive: true, force: true });
    fs.renameSync(a, b);
  }
  writeJsonAtomic(path.join(dir, "manifest.json"), j.manifest);
  fs.rmSync(jf, { force: true });
  if (!o.commit) log(`${dir}: finished an interrupted update (${j.renames.length} files)`);
  return true;
}
