/**
 * The larger offline corpora: Debian packages installed on demand (`retro corpus install NAME`), each read
 * as a dataset of a database config. None is needed by the tests; the bundled npm datasets stay the default.
 */
import * as fs from "node:fs";
import { spawnSync } from "node:child_process";
import { RetroError } from "../util/errors.ts";
import type { DatasetSpec } from "./document.ts";

export interface CorpusEntry {
  /** short name used on the command line and as the default dataset name */
  name: string;
  /** the Debian package that ships it */
  debian: string;
  /** how a database config reads it */
  source: "sword" | "dictd";
  /** the reader's path: a SWORD module id, or the dictd database's path without .index/.dict.dz */
  path: string;
  description: string;
  licence: string;
  /** a file the package installs, to tell whether it is installed */
  marker: string;
}

// the path and the installed-marker of each kind follow from where Debian puts it
const sword = (name: string, debian: string, module: string, description: string, licence: string): CorpusEntry => ({
  name,
  debian,
  source: "sword",
  path: module,
  description,
  licence,
  marker: `/usr/share/sword/mods.d/${module}.conf`,
});
const dictd = (name: string, description: string, licence: string): CorpusEntry => ({
  name,
  debian: `dict-${name}`,
  source: "dictd",
  path: `/usr/share/dictd/${name}`,
  description,
  licence,
  marker: `/usr/share/dictd/${name}.index`,
});

export const CORPORA: CorpusEntry[] = [
  sword(
    "kjv",
    "sword-text-kjv",
    "engKJV2006eb",
    "King James Version (1769), 66 books, 1,189 chapters, one document per chapter",
    "public domain",
  ),
  sword(
    "web",
    "sword-text-web",
    "engWEB2015eb",
    "World English Bible with Deuterocanon (2015), 81 books, 1,389 chapters, one document per chapter",
    "public domain",
  ),
  dictd("jargon", "The Jargon File (hacker slang), entries in groups of 25", "public domain"),
  dictd("foldoc", "Free On-line Dictionary of Computing, entries in groups of 25", "GFDL 1.1+"),
  dictd("devil", "Ambrose Bierce, The Devil's Dictionary (1911), entries in groups of 25", "public domain"),
];

export function corpusEntry(name: string): CorpusEntry {
  const e = CORPORA.find((c) => c.name === name);
  if (!e)
    throw new RetroError("usage", `unknown corpus "${name}"; choose one of ${CORPORA.map((c) => c.name).join(", ")}`);
  return e;
}

export function isInstalled(e: CorpusEntry): boolean {
  return fs.existsSync(e.marker);
}

/** The install command for the entry whose reader path is `path` (for "not found" messages), if any. */
export function installHint(source: string, path: string): string | undefined {
  const e = CORPORA.find(
    (c) => c.source === source && (c.path === path || c.path.toLowerCase() === path.toLowerCase()),
  );
  return e ? `retro corpus install ${e.name}  (= apt-get install -y ${e.debian}, as root)` : undefined;
}

/** A dataset entry for a database config. */
export function corpusDataset(name: string, weight = 1): DatasetSpec {
  const e = corpusEntry(name);
  return { name: e.name, source: e.source, path: e.path, weight };
}

/** Install corpora with apt-get (needs root and the Debian archive); already installed ones are skipped. */
export function installCorpora(names: string[], log: (s: string) => void = console.error): void {
  const entries = names.map(corpusEntry).filter((e) => !isInstalled(e));
  if (entries.length === 0) {
    log("already installed: " + names.join(", "));
    return;
  }
  const pkgs = entries.map((e) => e.debian);
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new RetroError(
      "usage",
      `installing ${pkgs.join(", ")} needs root: run  sudo apt-get install -y ${pkgs.join(" ")}`,
    );
  }
  log(`apt-get install -y ${pkgs.join(" ")}`);
  const r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...pkgs], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (r.error || r.status !== 0) {
    throw new RetroError(
      "notFound",
      `apt-get install ${pkgs.join(" ")} failed (${r.error?.message ?? `exit ${r.status}`}); is the Debian archive ` +
        "reachable? (apt-get update first)",
    );
  }
  for (const e of entries)
    if (!isInstalled(e)) throw new RetroError("notFound", `${e.debian} installed but ${e.marker} is missing`);
}
