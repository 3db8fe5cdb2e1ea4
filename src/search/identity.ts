/**
 * What an index store outside the database folder (a LanceDB dataset, a Postgres table) records about itself —
 * the dimension and embedder of its vectors — and the check that it is this database's store. A store shared by
 * several databases, or a `--store` pointed at another database's, would otherwise answer queries with another
 * embedder's vectors: nearest neighbours that mean nothing, and no error.
 */
import { RetroError } from "../util/errors.ts";
import type { IndexRecord } from "./types.ts";

export interface StoreIdentity {
  dim: number;
  /** absent in stores written before the identity was recorded: only their dimension is checked */
  embedderId?: string;
}

/** The embedder id in a store's recorded identity (JSON text); undefined when absent or written by someone else. */
export function recordedEmbedder(text: string | null | undefined): string | undefined {
  try {
    const id = JSON.parse(text ?? "{}") as Partial<StoreIdentity>;
    return typeof id.embedderId === "string" ? id.embedderId : undefined;
  } catch {
    return undefined; // not ours: only the dimension is checked
  }
}

/** Refuse a store whose vectors are not those the manifest's index record describes. */
export function checkStoreIdentity(where: string, stored: StoreIdentity, rec: IndexRecord): void {
  const dimOff = stored.dim !== rec.dim,
    embOff = stored.embedderId !== undefined && stored.embedderId !== rec.embedderId;
  if (!dimOff && !embOff) return;
  const what = (x: StoreIdentity) =>
    `vectors of dimension ${x.dim}${x.embedderId ? ` from embedder ${x.embedderId}` : ""}`;
  throw new RetroError(
    "mismatch",
    `${where} holds ${what(stored)}; this database's index is ${what(rec)}: the store belongs to another ` +
      `database (point config.index.store / --store at this database's own, or rebuild the index with ` +
      `"retro db build --out DIR" after deleting its index/ folder)`,
  );
}
