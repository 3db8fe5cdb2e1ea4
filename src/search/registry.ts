/**
 * Index backends by description: the one lookup where a database finds the code for its `config.index.description`.
 * A new backend is a module in this folder exporting an `IndexBackend`, and one line in BACKENDS.
 */
import { RetroError } from "../util/errors.ts";
import { bm25Backend } from "./bm25.ts";
import type { IndexBackend, IndexSettings } from "./types.ts";
import { usearchBackend } from "./usearch.ts";
import { lancedbBackend } from "./lancedb.ts";
import { pgvectorBackend } from "./pgvector.ts";

const BACKENDS: IndexBackend[] = [pgvectorBackend, usearchBackend, bm25Backend, lancedbBackend];

/** The backends, in lookup order. */
export function indexBackends(): readonly IndexBackend[] {
  return BACKENDS;
}

/**
 * Add a backend (a library user's own store): it is looked up before the built-in ones, so it may also take over a
 * description they read. A second backend of the same name is refused.
 */
export function registerIndexBackend(b: IndexBackend): void {
  if (BACKENDS.some((x) => x.name === b.name))
    throw new RetroError("usage", `an index backend named "${b.name}" is already registered`);
  BACKENDS.unshift(b);
}

/**
 * The backend that reads `description` in `store` (config.index.store: a database server's URL chooses the
 * server's backend), or a usage error listing every form the backends read.
 */
export function indexBackend(description: string, store = ""): IndexBackend {
  const b = BACKENDS.find((x) => x.accepts(description, store));
  if (b) return b;
  const why = /IVF|PQ|OPQ/i.test(description) ? " (IVF-PQ is read in the form IVF<n>,PQ<m>)" : "";
  const forms = BACKENDS.map((x) => x.forms).join(", ");
  throw new RetroError("usage", `index description "${description}" is not supported${why}; use one of: ${forms}`);
}

/** Validate index settings: the backend exists and accepts them. */
export function checkIndexSettings(s: IndexSettings): IndexBackend {
  const b = indexBackend(s.description, s.store);
  b.check(s);
  return b;
}
