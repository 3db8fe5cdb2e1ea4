/** Human-readable views of a database: stats and sample chunks with their neighbours. */
import * as path from "node:path";
import { indexBackend } from "../search/registry.ts";
import { diskBytes } from "../util/fsx.ts";
import type { Database, Manifest } from "./database.ts";

const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

export function formatStats(man: Manifest, dir?: string): string {
  const lines: string[] = [];
  const t = man.tokenizer;
  if (t) lines.push(`tokenizer      ${t.id} (vocab ${t.vocabSize}, eod ${t.eod}, ${t.dtype})`);
  lines.push(`chunk length   ${man.chunkLength}`);
  for (const d of man.datasets ?? [])
    lines.push(
      `dataset        ${d.name.padEnd(12)} weight ${d.weight}${d.weight === 0 ? " (retrieval-only)" : ""}  train ` +
        `docs ${d.trainDocs}  held-out docs ${d.validDocs}${d.skippedLines ? `  skipped lines ${d.skippedLines}` : ""}`,
    );
  if (man.splits)
    lines.push(
      `tokens         train ${man.splits.train.tokens} (${man.splits.train.docs} docs), valid ` +
        `${man.splits.valid.tokens} (${man.splits.valid.docs} docs)`,
    );
  if (man.chunks) lines.push(`chunks         ${man.chunks.count} (${man.chunks.padded} short, EOD-padded)`);
  // no vectors: the chunks' words are indexed
  const bm25 = man.index !== undefined && indexBackend(man.index.description, man.index.store).reads === "texts";
  if (man.embeddings && !bm25)
    lines.push(
      `embeddings     ${man.embeddings.embedderId}, dim ${man.embeddings.dim}, ${man.embeddings.blocks} blocks`,
    );
  if (man.index)
    lines.push(
      `index          ${man.index.description}, ${man.index.size} ${bm25 ? "chunks (their words)" : "vectors"}, ` +
        `built in ${man.index.buildSeconds.toFixed(1)} s`,
    );
  for (const [s, n] of Object.entries(man.neighbours ?? {}))
    lines.push(
      `neighbours     ${s}: ${n.samples} samples × ${n.chunksPerSample} chunks, top ${n.keep} of ${n.candidates}`,
    );
  if (dir)
    for (const p of ["tokens", "embed", "index", "neighbours"])
      lines.push(`disk ${p.padEnd(10)} ${mb(diskBytes(path.join(dir, p)))}`);
  return lines.join("\n");
}

const clip = (s: string, n: number) => {
  const one = s.replace(/\s+/g, " ").trim();
  return one.length > n ? one.slice(0, n) + "…" : one;
};

export function inspectSample(
  db: Database,
  split: string,
  sample: number,
  chunks: number,
  k: number,
  chars: number,
): string {
  const info = db.manifest.neighbours?.[split];
  const nb = db.sampleNeighbours(split, sample);
  const seq = info!.seq,
    m = db.m,
    keep = info!.keep;
  const r = db.split(split);
  const out: string[] = [];
  const d0 = r.docAt(sample * seq);
  out.push(
    `== ${split} sample ${sample} (dataset ${db.manifest.datasets?.[r.docDataset(d0)]?.name}, document ` +
      `${r.docOrdinal(d0)})`,
  );
  for (let j = 0; j < Math.min(chunks, seq / m); j++) {
    const toks = r.read(sample * seq + j * m, sample * seq + (j + 1) * m);
    out.push(`-- chunk ${j}: ${clip(db.tokenizer.decode(toks), chars)}`);
    for (let t = 0; t < Math.min(k, keep); t++) {
      const id = nb[j * keep + t];
      if (id < 0) {
        out.push(`   [${t}] (none)`);
        continue;
      }
      const doc = db.chunkDoc(id);
      const name = db.manifest.datasets?.[db.train.docDataset(doc)]?.name;
      out.push(
        `   [${t}] chunk ${id} (${name}, document ${db.train.docOrdinal(doc)}): ` +
          `${clip(db.tokenizer.decode(db.neighbourTokens(id)), chars)}`,
      );
    }
  }
  return out.join("\n");
}
