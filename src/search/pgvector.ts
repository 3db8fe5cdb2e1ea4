/**
 * A Postgres server with pgvector as the index — for a team that shares one database between several trainers
 * and servers: `config.index.store` (`--store`) is its URL, `postgres://user@host:5432/dbname` (the password from
 * PGPASSWORD or ~/.pgpass: the manifest records the URL without it). Any Postgres with the pgvector extension
 * serves, a distributed one (Citus) included; the standard `pg` client speaks to it (`npm install pg`, an optional
 * peer dependency). The tests run it against PGlite (Postgres in WebAssembly, with its vector extension) behind
 * pglite-socket on a loopback port — the same wire protocol.
 *
 * Descriptions: `HNSW<M>` (pgvector's HNSW, inner product; `efConstruction`, `efSearch` as for usearch),
 * `IVF<n>,Flat` (IVFFlat with n lists; `nprobes` probes), `Flat` (no index: exact search).
 *
 * The table holds (id, embedding). Rows go in by batches of 512, one transaction each. The same promise as
 * `db add`: readers and writers use only the rows below the manifest's chunk count — an add that crashed before
 * its manifest commit leaves rows nobody reads, and the next add deletes them first.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { RetroError } from "../util/errors.ts";
import { readJson, writeJsonAtomic } from "../util/fsx.ts";
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

type PgPool = import("pg").Pool;

async function pool(url: string): Promise<PgPool> {
  let pg: typeof import("pg");
  try {
    pg = (await import("pg")).default as unknown as typeof import("pg");
  } catch (e) {
    throw new RetroError(
      "usage",
      `the Postgres index backend needs the pg client (npm install pg): ${(e as Error).message}`,
    );
  }
  // idle connections never hold the process open (a command ends when its work does)
  return new pg.Pool({ connectionString: url, max: 2, idleTimeoutMillis: 1000, allowExitOnIdle: true });
}

export const PG_FILE = "pgvector.json";
const isPostgres = (store: string) => /^postgres(ql)?:\/\//i.test(store);

/** the URL without its password (what the manifest and messages may hold) */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = "";
    return u.toString();
  } catch {
    throw new RetroError("usage", `config.index.store: "${url}" is not a URL`);
  }
}

type Shape = { kind: "hnsw"; m: number } | { kind: "ivfflat"; lists: number } | { kind: "flat" };

function shapeOf(desc: string): Shape | null {
  const s = desc.replace(/\s+/g, "");
  if (/^Flat$/i.test(s)) return { kind: "flat" };
  const h = /^HNSW(\d+)$/i.exec(s);
  if (h) return { kind: "hnsw", m: Number(h[1]) };
  const v = /^IVF(\d+),Flat$/i.exec(s);
  if (v) return { kind: "ivfflat", lists: Number(v[1]) };
  return null;
}

/** a table name for a database folder (settings.table, else one derived from the folder's path) */
function tableFor(s: IndexSettings, ctx: IndexContext): string {
  const name =
    s.table ||
    `retro_${createHash("sha256")
      .update(path.resolve(ctx.dir ?? ""))
      .digest("hex")
      .slice(0, 16)}`;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name))
    throw new RetroError("usage", `config.index.table: "${name}" is not a Postgres table name (a-z, 0-9, _)`);
  return name;
}

/** queries per search statement */
const QUERY_GROUP = 64;

const vec = (v: Float32Array, i: number, dim: number) =>
  `[${Array.from(v.subarray(i * dim, (i + 1) * dim)).join(",")}]`;

class PgIndex implements SearchIndex {
  private db: PgPool | null = null;
  /** rows at and above it belong to no committed version (a crashed add): deleted before the next add */
  private committed: number;

  constructor(
    readonly description: string,
    private readonly shape: Shape,
    private readonly settings: IndexSettings,
    private readonly dim: number,
    private readonly url: string,
    private readonly table: string,
    private count: number,
    private readonly fresh: boolean,
    private readonly embedderId?: string,
  ) {
    this.committed = count;
  }

  get size(): number {
    return this.count;
  }

  private async conn(): Promise<PgPool> {
    if (!this.db) {
      this.db = await pool(this.url);
      this.db.on("error", () => {}); // an idle client's error must not kill the process; queries report theirs
    }
    return this.db;
  }

  async add(b: IndexBatch): Promise<void> {
    if (!b.vectors) throw new Error("pgvector index: add needs vectors");
    if (b.first !== this.count) throw new Error(`pgvector index: ids must continue at ${this.count}, got ${b.first}`);
    const db = await this.conn();
    if (this.count === this.committed) {
      if (this.fresh && this.count === 0) {
        await db.query("CREATE EXTENSION IF NOT EXISTS vector");
        await db.query(`DROP TABLE IF EXISTS ${this.table}`); // a killed build's table: built again from nothing
        await db.query(`CREATE TABLE ${this.table} (id integer PRIMARY KEY, embedding vector(${this.dim}) NOT NULL)`);
        // whose vectors these are, checked by open (identity.ts)
        const identity: StoreIdentity = { dim: this.dim, embedderId: this.embedderId };
        await db.query(`COMMENT ON TABLE ${this.table} IS '${JSON.stringify(identity).replace(/'/g, "''")}'`);
      } else await db.query(`DELETE FROM ${this.table} WHERE id >= $1`, [this.committed]); // a crashed add's rows
    }
    for (let s = 0; s < b.count; s += 512) {
      const n = Math.min(512, b.count - s);
      const params: (number | string)[] = [];
      const rows: string[] = [];
      for (let i = 0; i < n; i++) {
        params.push(b.first + s + i, vec(b.vectors, s + i, this.dim));
        rows.push(`($${2 * i + 1}, $${2 * i + 2})`);
      }
      const c = await db.connect();
      try {
        await c.query("BEGIN");
        await c.query(`INSERT INTO ${this.table} (id, embedding) VALUES ${rows.join(",")}`, params);
        await c.query("COMMIT");
      } catch (e) {
        await c.query("ROLLBACK").catch(() => {});
        throw new RetroError("io", `Postgres ${redactUrl(this.url)}: insert failed (${(e as Error).message})`);
      } finally {
        c.release();
      }
    }
    this.count += b.count;
  }

  async search(q: SearchQueries, k: number): Promise<SearchHits> {
    if (!q.vectors) throw new Error("pgvector index: search needs query vectors");
    const nq = q.vectors.length / this.dim;
    const ids = new Int32Array(nq * k).fill(-1);
    const scores = new Float32Array(nq * k).fill(-Infinity);
    if (this.count === 0) return { ids, scores };
    const db = await this.conn();
    const c = await db.connect();
    try {
      if (this.shape.kind === "hnsw") await c.query(`SET hnsw.ef_search = ${Math.max(k, this.settings.efSearch)}`);
      if (this.shape.kind === "ivfflat") await c.query(`SET ivfflat.probes = ${this.settings.nprobes}`);
      // QUERY_GROUP queries per statement (a lateral join: each query's own index scan), one round trip each
      for (let g0 = 0; g0 < nq; g0 += QUERY_GROUP) {
        const g1 = Math.min(nq, g0 + QUERY_GROUP);
        const qi = Array.from({ length: g1 - g0 }, (_, i) => g0 + i);
        const r = await c.query<{ i: number; id: number; d: number }>(
          `SELECT q.i, t.id, t.d FROM unnest($1::int[], $2::text[]) AS q(i, v) CROSS JOIN LATERAL ` +
            `(SELECT id, (embedding <#> q.v::vector) AS d FROM ${this.table} WHERE id < $3 ` +
            `ORDER BY embedding <#> q.v::vector LIMIT $4) t ORDER BY q.i, t.d`,
          [qi, qi.map((i) => vec(q.vectors!, i, this.dim)), this.count, k],
        );
        let last = -1,
          j = 0;
        for (const row of r.rows) {
          j = row.i === last ? j + 1 : 0;
          last = row.i;
          ids[row.i * k + j] = row.id;
          scores[row.i * k + j] = -row.d; // <#> is the negative inner product
        }
      }
    } finally {
      c.release();
    }
    return { ids, scores };
  }

  /** Build the table's index (once; rows added later are indexed by Postgres as they come), record the store. */
  async save(dir: string): Promise<IndexFiles> {
    const db = await this.conn();
    const s = this.settings;
    if (this.shape.kind === "hnsw")
      await db.query(
        `CREATE INDEX IF NOT EXISTS ${this.table}_hnsw ON ${this.table} USING hnsw (embedding vector_ip_ops) ` +
          `WITH (m = ${this.shape.m}, ef_construction = ${s.efConstruction})`,
      );
    else if (this.shape.kind === "ivfflat")
      await db.query(
        `CREATE INDEX IF NOT EXISTS ${this.table}_ivf ON ${this.table} USING ivfflat (embedding vector_ip_ops) ` +
          `WITH (lists = ${this.shape.lists})`,
      );
    const store = redactUrl(this.url);
    fs.mkdirSync(dir, { recursive: true });
    writeJsonAtomic(path.join(dir, PG_FILE), { store, table: this.table, size: this.count });
    await this.close();
    return { store, table: this.table };
  }

  async close(): Promise<void> {
    const db = this.db;
    this.db = null;
    await db?.end();
  }
}

/** Postgres + pgvector: a shared server's table, chosen by a postgres:// store. */
export const pgvectorBackend: IndexBackend = {
  name: "pgvector",
  forms: "HNSW<M>, IVF<n>,Flat, Flat with --store postgres://… (pgvector)",
  reads: "vectors",
  accepts: (description, store) => isPostgres(store) && shapeOf(description) !== null,
  check(s: IndexSettings): void {
    redactUrl(s.store);
  },
  isSaved: (dir) => fs.existsSync(path.join(dir, PG_FILE)),
  create: (s, dim, ctx) =>
    new PgIndex(s.description, shapeOf(s.description)!, s, dim, s.store, tableFor(s, ctx), 0, true, ctx.embedderId),
  async open(dir: string, rec: IndexRecord, s: IndexSettings): Promise<SearchIndex> {
    const file = path.join(dir, PG_FILE);
    if (!fs.existsSync(file)) throw new RetroError("notFound", `index file not found: ${file}`);
    const saved = readJson<{ store: string; table: string; size: number }>(file, "pgvector index record");
    if (saved.table !== rec.table)
      throw new RetroError("corrupt", `${file}: table ${saved.table}, the manifest says ${rec.table}`);
    // the URL of the config (it may carry what the recorded one lacks: a password is never recorded)
    const url = s.store && redactUrl(s.store) === rec.store ? s.store : rec.store!;
    const db = await pool(url);
    try {
      // the table's vector dimension (pgvector keeps it as the column's type modifier) and its recorded identity
      const t = await db.query<{ dim: number; note: string | null }>(
        `SELECT a.atttypmod AS dim, obj_description(a.attrelid, 'pg_class') AS note FROM pg_attribute a ` +
          `WHERE a.attrelid = to_regclass($1) AND a.attname = 'embedding'`,
        [rec.table],
      );
      if (!t.rows.length)
        throw new RetroError(
          "corrupt",
          `Postgres ${rec.store}: table ${rec.table} (or its embedding column) is missing`,
        );
      const embedderId = recordedEmbedder(t.rows[0].note);
      checkStoreIdentity(`Postgres table ${rec.table} at ${rec.store}`, { dim: t.rows[0].dim, embedderId }, rec);
      const r = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${rec.table} WHERE id < $1`, [rec.size]);
      if (Number(r.rows[0].n) !== rec.size)
        throw new RetroError(
          "corrupt",
          `Postgres table ${rec.table}: ${r.rows[0].n} rows below ${rec.size}, expected ${rec.size}`,
        );
    } catch (e) {
      if (e instanceof RetroError) throw e;
      throw new RetroError("io", `Postgres ${rec.store}: ${(e as Error).message}`);
    } finally {
      await db.end();
    }
    return new PgIndex(rec.description, shapeOf(rec.description)!, s, rec.dim, url, rec.table!, rec.size, false);
  },
};
