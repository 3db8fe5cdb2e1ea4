/**
 * IVF-PQ on disk through LanceDB (`@lancedb/lancedb`, an optional peer dependency: `npm install
 * @lancedb/lancedb@0.31.0`), for databases whose vectors do not fit in memory: the vectors and the PQ codes live
 * in a Lance dataset (by default `lance/` in the database folder; `config.index.store` puts it elsewhere, e.g. a
 * shared file system), and a query reads the partitions it probes, never the whole table.
 *
 * Descriptions in Faiss's vocabulary: `IVF<n>,PQ<m>` — n inverted lists (LanceDB's partitions), m sub-vectors of
 * 8 bits (PQ<m>x4 for 4 bits). Faiss's OPQ rotation and an HNSW coarse quantizer have no LanceDB equivalent and
 * are refused with the form to use instead. Query options: `nprobes` (lists searched) and `refineFactor` (re-rank
 * refineFactor·k candidates by their full vectors; 0: PQ distances only).
 *
 * Two choices that made a query 6× faster at 1M chunks (192 → 1,157 queries/s at recall ≥ 0.9; measurements.md):
 *  - the index is trained with the L2 distance, not the dot product: LanceDB quantizes the residual from the list's
 *    centroid under L2 (as Faiss's IVF-PQ does) and the raw vector under dot, and for the unit vectors stored the
 *    two rank alike (|q−x|² = |q|² + 1 − 2q·x), so scores are (|q|² + 1 − d)/2 = q·x. PQ64 on dim 64, 200k
 *    chunks: recall 0.95 without re-ranking, 0.75 under dot, where re-ranking 10·k candidates from disk cost 3×;
 *  - the table is created with stable row ids, which LanceDB assigns 0, 1, 2, … in the order rows are added — the
 *    chunk ids —, so a query returns `_rowid` from the index instead of reading each hit's `id` from the dataset
 *    (1.9× the queries/s at 200k). `save` checks that they agree before recording it; a table where they do not
 *    (or one written before, recorded without `rowIds`) is queried for `id`.
 *
 * Atomic updates without copying the table: Lance commits every write as a new table version. The manifest
 * records the version the database was built or updated to; readers open the table at that version (a snapshot),
 * and `db add` first restores it — so the rows of an add that crashed before its manifest commit are never seen.
 * The `index/lancedb.json` file (renamed into place with the rest of an update) names the store and version.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RetroError } from "../util/errors.ts";
import { readJson, writeJsonAtomic } from "../util/fsx.ts";
import { log } from "../util/progress.ts";
import { checkStoreIdentity, recordedEmbedder, type StoreIdentity } from "./identity.ts";
import type {
  IndexBackend,
  IndexBatch,
  IndexContext,
  IndexFiles,
  IndexRecord,
  IndexSettings,
  SearchHits,
  SearchIndex,
  SearchQueries,
} from "./types.ts";

type LanceModule = typeof import("@lancedb/lancedb");
type Table = import("@lancedb/lancedb").Table;

let lance: LanceModule | null = null;
/** The LanceDB module, loaded on first use (so that retro-ts installs and runs without it). */
async function lancedb(): Promise<LanceModule> {
  if (lance) return lance;
  try {
    lance = await import("@lancedb/lancedb");
    return lance;
  } catch (e) {
    throw new RetroError(
      "usage",
      `the LanceDB index backend needs @lancedb/lancedb (npm install @lancedb/lancedb@0.31.0): ${(e as Error).message}`,
    );
  }
}

const TABLE = "chunks";
/** the schema metadata key of the table's identity (identity.ts) */
const IDENTITY_KEY = "retro";
/** the tag that guards the committed version while an add prunes the versions before it (see `prune`) */
const KEEP_TAG = "retro-committed";
/** the time between a save's recorded version and its other versions (see `prune`) */
const SETTLE_MS = 500;
/** query vectors per LanceDB plan (see `search`) */
const QUERY_GROUP = 32;
/** the distance new indexes are trained with (see the top of this file); tables recorded without one used "dot" */
const METRIC = "l2";
type Metric = "l2" | "dot";

/** Sort row [o, o + k) of a hit list by score, best first (−1 ids, at −∞, stay last). */
function sortRow(ids: Int32Array, scores: Float32Array, o: number, k: number): void {
  const order = Array.from({ length: k }, (_, j) => j).sort((x, y) => scores[o + y] - scores[o + x] || 0);
  const i2 = order.map((j) => ids[o + j]),
    s2 = order.map((j) => scores[o + j]);
  ids.set(i2, o);
  scores.set(s2, o);
}
export const LANCE_FILE = "lancedb.json";

export interface IvfPq {
  lists: number;
  subVectors: number;
  bits: 4 | 8;
}

/** `IVF<n>,PQ<m>[x4|x8]`, or null when the description is not of the IVF/PQ family at all. */
function readDescription(desc: string): { ivfpq: IvfPq | null; problem: string | null } | null {
  const s = desc.replace(/\s+/g, "");
  if (!/IVF/i.test(s) || !/PQ/i.test(s)) return null;
  const m = /^(OPQ\d+(?:_\d+)?,)?IVF(\d+)(_HNSW\d+)?,PQ(\d+)(?:x(\d+))?$/i.exec(s);
  if (!m) return { ivfpq: null, problem: `"${desc}" is not of the form IVF<n>,PQ<m>` };
  const plain = `IVF${m[2]},PQ${m[4]}${m[5] ? `x${m[5]}` : ""}`;
  if (m[1])
    return {
      ivfpq: null,
      problem: `"${desc}": LanceDB has no OPQ rotation (Faiss's learned rotation before PQ); use "${plain}"`,
    };
  if (m[3])
    return {
      ivfpq: null,
      problem: `"${desc}": LanceDB assigns lists by a flat coarse quantizer, not HNSW; use "${plain}"`,
    };
  const bits = m[5] === undefined ? 8 : Number(m[5]);
  if (bits !== 4 && bits !== 8)
    return { ivfpq: null, problem: `"${desc}": LanceDB's PQ codes have 4 or 8 bits, not ${bits}` };
  const ivfpq: IvfPq = { lists: Number(m[2]), subVectors: Number(m[4]), bits };
  if (ivfpq.lists < 1 || ivfpq.subVectors < 1)
    return { ivfpq: null, problem: `"${desc}": the lists and sub-vectors must be at least 1` };
  return { ivfpq, problem: null };
}

export function parseIvfPq(desc: string): IvfPq {
  const r = readDescription(desc);
  if (!r || r.problem) throw new RetroError("usage", `index description ${r?.problem ?? `"${desc}" is not IVF-PQ`}`);
  return r.ivfpq!;
}

const isUrl = (store: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(store); // s3://, gs://, az://, …

/** where the Lance dataset lives: config.index.store (relative to the database), else `lance/` inside it */
function storeOf(s: IndexSettings, ctx: IndexContext): string {
  if (isUrl(s.store)) return s.store;
  if (!ctx.dir) throw new RetroError("usage", "the LanceDB backend needs the database folder");
  return path.resolve(ctx.dir, s.store || "lance");
}

/** The store as recorded: relative to the database when inside it (the folder moves as one), else as it is. */
function recordedStore(uri: string, dbDir: string | undefined): string {
  if (isUrl(uri) || !dbDir) return uri;
  const rel = path.relative(dbDir, uri);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : uri;
}

/**
 * How a table is read: the distance its index was trained with, whether its row ids are the chunk ids, and how many
 * chunks have no row (their vector is 0: see `dropZeros`).
 */
interface TableForm {
  metric: Metric;
  rowIds: boolean;
  zeroRows: number;
}

class LanceIndex implements SearchIndex {
  private table: Table | null = null;
  /** the version rows are added on top of (an add restores it first: a crashed add's rows are dropped) */
  private base: number | null;
  /** the committed version an add restored: kept by its save (readers may hold it), the versions before it removed */
  private kept: number | null = null;
  /** the id of the first row added by this instance (save checks the row ids of what it added) */
  private firstAdded = -1;
  /** the chunks this instance added whose vector is 0 (deleted by save under L2: see `dropZeros`) */
  private zeros: number[] = [];
  /** how many of `zeros` are deleted */
  private dropped = 0;

  constructor(
    readonly description: string,
    private readonly spec: IvfPq,
    private readonly settings: IndexSettings,
    private readonly dim: number,
    private readonly uri: string,
    /** the store as the records name it (recordedStore) */
    private readonly store: string,
    private count: number,
    version: number | null,
    opened: Table | null,
    private form: TableForm,
    private readonly embedderId?: string,
  ) {
    this.table = opened;
    this.base = version;
  }

  get size(): number {
    return this.count;
  }

  async add(b: IndexBatch): Promise<void> {
    if (!b.vectors) throw new Error("LanceDB index: add needs vectors");
    if (b.first !== this.count) throw new Error(`LanceDB index: ids must continue at ${this.count}, got ${b.first}`);
    const rows = Array.from({ length: b.count }, (_, i) => ({
      id: b.first + i,
      vector: Array.from(b.vectors!.subarray(i * this.dim, (i + 1) * this.dim)),
    }));
    const db = await lancedb();
    if (!this.table) {
      const conn = await db.connect(this.uri);
      // a build starts its index from nothing: a table left by an earlier build of a database (killed, or whose
      // index was deleted) is dropped with all its versions — overwriting it kept them all on disk. A table that
      // retro-ts did not write is refused, not dropped. The schema's metadata records whose vectors these are
      // (checked by open)
      if ((await conn.tableNames()).includes(TABLE)) {
        const old = await conn.openTable(TABLE);
        if (!(await old.schema()).metadata.has(IDENTITY_KEY))
          throw new RetroError(
            "mismatch",
            `${this.uri} holds a LanceDB table "${TABLE}" that retro-ts did not write: set the index store ` +
              "(--store) to another place, or remove it",
          );
        old.close();
        await conn.dropTable(TABLE);
      }
      const arrow = await import("apache-arrow"); // LanceDB's own peer dependency: installed with it
      const identity: StoreIdentity = { dim: this.dim, embedderId: this.embedderId };
      const schema = new arrow.Schema(
        [
          new arrow.Field("id", new arrow.Int32(), false),
          new arrow.Field(
            "vector",
            new arrow.FixedSizeList(this.dim, new arrow.Field("item", new arrow.Float32(), true)),
            false,
          ),
        ],
        new Map([[IDENTITY_KEY, JSON.stringify(identity)]]),
      );
      this.table = await conn.createTable(TABLE, rows, {
        mode: "create",
        schema,
        storageOptions: { new_table_enable_stable_row_ids: "true" },
      });
    } else {
      if (this.base !== null) {
        await this.table.checkout(this.base);
        await this.table.restore(); // the committed version, whatever a crashed add wrote after it
        this.kept = this.base;
        this.base = null;
      }
      await this.table.add(rows);
    }
    if (this.firstAdded < 0) this.firstAdded = b.first;
    for (let i = 0; i < b.count; i++)
      if (b.vectors.subarray(i * this.dim, (i + 1) * this.dim).every((x) => x === 0)) this.zeros.push(b.first + i);
    this.count += b.count;
  }

  /**
   * Queries go to LanceDB in groups of QUERY_GROUP vectors per plan (`addQueryVector`: one plan, rows tagged by
   * `query_index`), with `threads` plans in flight: one query per call spent most of its ~5 ms crossing into the
   * Rust core and planning, not probing lists.
   */
  async search(q: SearchQueries, k: number): Promise<SearchHits> {
    if (!q.vectors) throw new Error("LanceDB index: search needs query vectors");
    const nq = q.vectors.length / this.dim;
    const ids = new Int32Array(nq * k).fill(-1);
    const scores = new Float32Array(nq * k).fill(-Infinity);
    const table = this.table;
    if (!table || this.count === 0) return { ids, scores };
    const { metric, rowIds } = this.form;
    const norm2 = new Float32Array(nq); // |q|² of each query (scores under L2)
    for (let i = 0; i < q.vectors.length; i++) norm2[Math.floor(i / this.dim)] += q.vectors[i] * q.vectors[i];
    const group = async (g0: number): Promise<void> => {
      const g1 = Math.min(nq, g0 + QUERY_GROUP);
      let query = table
        .vectorSearch(q.vectors!.subarray(g0 * this.dim, (g0 + 1) * this.dim))
        .distanceType(metric)
        .limit(k)
        .nprobes(this.settings.nprobes)
        .select(rowIds ? ["_distance"] : ["id", "_distance"]);
      if (rowIds) query = query.withRowId();
      for (let i = g0 + 1; i < g1; i++)
        query = query.addQueryVector(q.vectors!.subarray(i * this.dim, (i + 1) * this.dim));
      if (this.settings.refineFactor > 0) query = query.refineFactor(this.settings.refineFactor);
      const t = await query.toArrow();
      // one query vector: no query_index column
      const qi = t.getChild("query_index"),
        id = t.getChild(rowIds ? "_rowid" : "id")!,
        dist = t.getChild("_distance")!;
      const filled = new Int32Array(g1 - g0);
      for (let r = 0; r < t.numRows; r++) {
        const i = g0 + (qi ? Number(qi.get(r)) : 0);
        const j = filled[i - g0]++;
        if (j >= k) continue;
        ids[i * k + j] = Number(id.get(r));
        // LanceDB's dot distance is 1 − q·x; its L2 distance is |q−x|² = |q|² + 1 − 2q·x for a unit x
        // (a query with no known word embeds to 0: its score is 0, not 1/2; a chunk whose vector is 0 has no row)
        const d = Number(dist.get(r));
        scores[i * k + j] = metric === "l2" ? (norm2[i] + 1 - d) / 2 : 1 - d;
      }
    };
    const starts = Array.from({ length: Math.ceil(nq / QUERY_GROUP) }, (_, i) => i * QUERY_GROUP);
    const lanes = Math.max(1, this.settings.threads);
    await Promise.all(
      Array.from({ length: lanes }, async (_, lane) => {
        for (let s = lane; s < starts.length; s += lanes) await group(starts[s]);
      }),
    );
    // rows of one query come back best first; keep that order per query whatever the group's row order
    for (let i = 0; i < nq; i++) sortRow(ids, scores, i * k, k);
    return { ids, scores };
  }

  /**
   * Train the IVF-PQ index on the rows (at a build: when the table holds enough rows to train it; LanceDB searches
   * rows added after the training by scanning them, and `optimize` folds them into the index), then record the
   * table's version in `dir/lancedb.json` — the version readers will open.
   */
  async save(dir: string): Promise<IndexFiles> {
    if (!this.table) throw new RetroError("badInput", "LanceDB index: nothing was added");
    const db = await lancedb();
    await this.dropZeros();
    const indices = await this.table.listIndices();
    const rows = this.count - this.form.zeroRows; // the chunks with a vector
    const trainable = rows >= Math.max(256, this.spec.lists);
    if (!indices.length && trainable) {
      if (this.dim % this.spec.subVectors)
        throw new RetroError(
          "usage",
          `index description "${this.description}": PQ${this.spec.subVectors} must divide the dimension ${this.dim}`,
        );
      log(`training LanceDB IVF${this.spec.lists},PQ${this.spec.subVectors} on ${rows} vectors...`);
      await this.table.createIndex("vector", {
        config: db.Index.ivfPq({
          numPartitions: this.spec.lists,
          numSubVectors: this.spec.subVectors,
          numBits: this.spec.bits,
          distanceType: this.form.metric,
        }),
      });
    } else if (indices.length) await this.table.optimize({ cleanupOlderThan: new Date(0), deleteUnverified: false });
    else log(`LanceDB: ${rows} vectors are too few to train IVF-PQ; queries scan them all`);
    await this.prune();
    if (this.form.rowIds && !(await this.rowIdsAreIds())) {
      log("LanceDB: the table's row ids are not the chunk ids; queries will read the id column");
      this.form = { ...this.form, rowIds: false };
    }
    // the version readers will open is committed SETTLE_MS after this save's others (a restore of the latest: the
    // same rows and index), so that the next add's prune tells them apart by their time (see prune)
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    await this.table.checkout(await this.table.version());
    await this.table.restore();
    const version = await this.table.version();
    fs.mkdirSync(dir, { recursive: true });
    const saved: SavedTable = { store: this.store, table: TABLE, version, ...this.form };
    writeJsonAtomic(path.join(dir, LANCE_FILE), saved);
    return { version, store: this.store };
  }

  /**
   * Remove the versions before the committed one this add started from. `optimize` compacts the table and folds
   * the new rows into the index, rewriting both, so every add kept a copy (5 adds of ~3 % each to a 35 MB table:
   * 225 MB). Nobody reads those versions: a reader that has seen the manifest since is at the committed version or
   * later (a server opens the database again on its next request after an update), and that version is kept, for
   * readers still at it and for this add until its manifest commits (a crash before leaves the database at it).
   * Lance removes the versions timed before a date, taken when its prune runs (tens of ms after the call), not
   * when it is called: the date is set a margin before the kept version — which was committed SETTLE_MS after its
   * add's other versions (save), so a margin under SETTLE_MS removes them all —, and the kept version is tagged
   * meanwhile, so that Lance refuses rather than remove it if its prune ran later than the margin (then a larger
   * margin is tried, and at the last the versions wait for the next add).
   */
  private async prune(): Promise<void> {
    if (this.kept === null || !this.table) return;
    const kept = (await this.table.listVersions()).find((v) => v.version === this.kept);
    if (!kept) return;
    const tags = await this.table.tags();
    if (KEEP_TAG in (await tags.list())) await tags.update(KEEP_TAG, kept.version);
    else await tags.create(KEEP_TAG, kept.version);
    try {
      for (const marginMs of [150, 400]) {
        try {
          await this.table.optimize({
            cleanupOlderThan: new Date(kept.timestamp.getTime() - marginMs),
            deleteUnverified: false,
          });
          return;
        } catch (e) {
          if (!/tagged version/i.test(String(e))) throw e;
        }
      }
      log(`LanceDB: the versions before ${kept.version} are kept until the next add (Lance ran late)`);
    } finally {
      await tags.delete(KEEP_TAG);
    }
  }

  /**
   * A chunk whose vector is 0 (the LSA embedder knows none of its words: a chunk of punctuation or a few unknown
   * tokens at a document's end) has the dot product 0 with every query; under L2 it is at distance |q| from each,
   * and scored (|q|² + 1 − d)/2 = 1/2 it came first for queries whose best match was under 1/2 (found by a search
   * in a small database: a chunk reading `"` first for every query). Its row is deleted before the index is
   * trained or updated (the other rows keep their ids: stable row ids), and the record counts such rows.
   */
  private async dropZeros(): Promise<void> {
    if (this.form.metric !== "l2" || this.dropped === this.zeros.length || !this.table) return;
    for (let i = this.dropped; i < this.zeros.length; i += 1000)
      await this.table.delete(`id IN (${this.zeros.slice(i, i + 1000).join(",")})`);
    this.form = { ...this.form, zeroRows: this.form.zeroRows + this.zeros.length - this.dropped };
    this.dropped = this.zeros.length;
  }

  /** Do the first and last rows this instance added (those with a vector) have row id = chunk id? */
  private async rowIdsAreIds(): Promise<boolean> {
    const deleted = new Set(this.zeros);
    const hasRow = (i: number) => i >= 0 && i < this.count && !deleted.has(i);
    let first = Math.max(this.firstAdded, 0);
    while (first < this.count && !hasRow(first)) first++;
    let last = this.count - 1;
    while (last > first && !hasRow(last)) last--;
    if (!hasRow(first)) return true; // nothing added with a vector: nothing to check
    const probe = [...new Set([first, last])];
    try {
      const t = await this.table!.takeRowIds(probe).select(["id"]).withRowId().toArrow();
      const id = t.getChild("id"),
        rid = t.getChild("_rowid");
      if (!id || !rid || t.numRows !== probe.length) return false;
      for (let r = 0; r < t.numRows; r++) if (Number(id.get(r)) !== Number(rid.get(r))) return false;
      return true;
    } catch {
      return false; // a row id that is not there
    }
  }
}

/** `index/lancedb.json`: the table and version the database is at, and how to read it (metric, rowIds: see top) */
interface SavedTable extends Partial<TableForm> {
  store: string;
  table: string;
  version: number;
}

const NEW_TABLE: TableForm = { metric: METRIC, rowIds: true, zeroRows: 0 };

/** LanceDB IVF-PQ: vectors and codes on disk, queried without loading the table. */
export const lancedbBackend: IndexBackend = {
  name: "lancedb",
  forms: "IVF<n>,PQ<m> (LanceDB, on disk)",
  reads: "vectors",
  accepts: (description, store) => readDescription(description) !== null && !/^postgres(ql)?:/i.test(store),
  check(s: IndexSettings): void {
    parseIvfPq(s.description);
  },
  isSaved: (dir) => fs.existsSync(path.join(dir, LANCE_FILE)),
  create(s, dim, ctx) {
    const uri = storeOf(s, ctx);
    const spec = parseIvfPq(s.description);
    return new LanceIndex(
      s.description,
      spec,
      s,
      dim,
      uri,
      recordedStore(uri, ctx.dir),
      0,
      null,
      null,
      NEW_TABLE,
      ctx.embedderId,
    );
  },
  async open(dir: string, rec: IndexRecord, s: IndexSettings, ctx: IndexContext): Promise<SearchIndex> {
    const file = path.join(dir, LANCE_FILE);
    if (!fs.existsSync(file)) throw new RetroError("notFound", `index file not found: ${file}`);
    const saved = readJson<SavedTable>(file, "LanceDB index record");
    if (saved.version !== rec.version || saved.store !== rec.store)
      throw new RetroError(
        "corrupt",
        `${file}: LanceDB table version ${saved.version} at ${saved.store}, the manifest says ${rec.version} at ` +
          `${rec.store}`,
      );
    const zeroRows = saved.zeroRows ?? 0;
    if (
      ![undefined, "dot", "l2"].includes(saved.metric) ||
      ![undefined, true, false].includes(saved.rowIds) ||
      !Number.isInteger(zeroRows) ||
      zeroRows < 0
    )
      throw new RetroError(
        "corrupt",
        `${file}: metric ${JSON.stringify(saved.metric)} / rowIds ${JSON.stringify(saved.rowIds)} / zeroRows ` +
          `${JSON.stringify(saved.zeroRows)} (expected "dot" or "l2" / true or false / a count)`,
      );
    const db = await lancedb();
    // a store recorded relative to the database (its own lance/) is found wherever the database now is
    const uri = isUrl(saved.store) ? saved.store : path.resolve(ctx.dir ?? path.dirname(dir), saved.store);
    let table: Table;
    try {
      table = await (await db.connect(uri)).openTable(saved.table);
      await table.checkout(saved.version); // the snapshot the manifest describes
    } catch (e) {
      const why = (e as Error).message.split(/\s+Caused by:|\n/)[0]; // LanceDB's first line, not its chain
      throw new RetroError("corrupt", `LanceDB table ${uri}/${saved.table}: ${why}`);
    }
    const schema = await table.schema();
    const vector = schema.fields.find((f) => f.name === "vector");
    const listSize = (vector?.type as { listSize?: number } | undefined)?.listSize ?? -1;
    const embedderId = recordedEmbedder(schema.metadata.get(IDENTITY_KEY));
    checkStoreIdentity(`LanceDB table ${uri}/${saved.table}`, { dim: listSize, embedderId }, rec);
    const rows = await table.countRows();
    if (rows + zeroRows !== rec.size)
      throw new RetroError(
        "corrupt",
        `LanceDB table ${uri}: ${rows} rows at version ${saved.version}, expected ${rec.size - zeroRows}` +
          (zeroRows ? ` (${rec.size} chunks, ${zeroRows} of them without a vector)` : ""),
      );
    return new LanceIndex(
      rec.description,
      parseIvfPq(rec.description),
      s,
      rec.dim,
      uri,
      saved.store,
      rec.size,
      saved.version,
      table,
      // a table recorded before these fields: trained under dot, read by its id column
      { metric: saved.metric ?? "dot", rowIds: saved.rowIds ?? false, zeroRows },
      rec.embedderId,
    );
  },
};
