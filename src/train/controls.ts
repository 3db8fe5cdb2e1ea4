/**
 * Does a model read its neighbours? Held-out loss under controls (`retro eval ppl --controls`):
 *
 * - neighbours: `own` (the sample's retrieved neighbours), `another` (real neighbours of another held-out sample),
 *   `random` (random database chunks), `none` (gate 0: the decoder alone). A model that reads its neighbours is
 *   best with its own; if `own` = `another` = `random`, retrieval carries nothing.
 * - RETRO §2.6's overlap buckets: per evaluated chunk, the longest run of tokens it shares with the neighbours
 *   its tokens read, as a share of the chunk; loss of the chunks with overlap ≤ 12.5 %, 25 %, 50 %, 100 %
 *   (cumulative, as RETRO filters). The evaluated chunk u+1 is what positions u·m+m−1 … u·m+2m−2 predict, the
 *   positions that read chunk u's neighbours; the first m−1 positions read nothing and are reported apart, and
 *   the last window (the sequence's final position only) is not a whole chunk and is left out of the buckets.
 * - loss split by whether the target token occurs anywhere in the neighbours its position reads.
 * A GPT is bucketed by the same neighbours (it does not read them), so the two compare chunk for chunk.
 */
import type { Database } from "../db/database.ts";
import type { Model } from "../model/model.ts";
import { Loader } from "./loader.ts";
import { RetroError } from "../util/errors.ts";

export const OVERLAP_BUCKETS = [0.125, 0.25, 0.5, 1] as const;

export interface LossCell {
  loss: number;
  tokens: number;
}

export interface ControlReport {
  model: "gpt" | "retro";
  /** held-out loss (mean over tokens) with each neighbour source; a GPT has only `own` (its plain loss) */
  loss: { own: number; another?: number; random?: number; none?: number };
  ppl: { own: number; another?: number; random?: number; none?: number };
  tokens: number;
  /** own neighbours: loss of the positions that read no neighbours (the first m−1 of a sequence) */
  noNeighboursRead: LossCell;
  /** own neighbours: loss over chunks with overlap ≤ each bucket */
  overlap: { upTo: number; loss: number; tokens: number; chunks: number }[];
  /** own neighbours: loss where the target token occurs in the neighbours read, and where it does not */
  targetInNeighbours: { yes: LossCell; no: LossCell };
  /** GPT only: the in-context baseline (see evalInContext) */
  inContext?: InContextReport;
  /**
   * Loss on the token sets given as masks (e.g. the facts of the held-out text), with each neighbour source;
   * `read`: own neighbours, the positions whose target occurs in the neighbours they read.
   */
  masked?: Record<
    string,
    { own: LossCell; another?: number; random?: number; none?: number; read: LossCell; unread: LossCell }
  >;
}

export interface InContextReport {
  /** loss of the evaluated chunks with the neighbours' tokens placed before the context */
  with: number;
  /** the same chunks, the same context, no neighbours */
  without: number;
  tokens: number;
  /** context tokens of the sample before each evaluated chunk (at most; fewer near a sample's start) */
  context: number;
}

/**
 * The in-context baseline: does a GPT predict a chunk better when the neighbours Retro would read for it (those
 * of the chunk before) are written before its context? For each held-out sample and each chunk u+1 (u ≥ 0), the
 * GPT reads [k·r neighbour tokens of chunk u] + [the sample's tokens before chunk u+1, as many as fit] + chunk
 * u+1, and its loss on chunk u+1 is compared with the same input without the neighbour prefix. A gain says the
 * neighbours carry signal usable in context, whatever CCA makes of it.
 */
export function evalInContext(
  model: Model,
  db: Database,
  o: { batch: number; k?: number; r?: number },
): InContextReport {
  const c = model.config,
    m = db.m,
    n = c.seq,
    k = o.k ?? kOf(model),
    r = o.r ?? c.r,
    pre = k * r;
  if (pre + 2 * m > n)
    throw new RetroError(
      "usage",
      `in-context baseline: k·r = ${pre} neighbour tokens and two chunks do not fit the GPT's ${n} positions`,
    );
  const info = db.manifest.neighbours?.valid;
  if (!info) throw new RetroError("badInput", `${db.dir}: neighbours of the valid split have not been computed`);
  const reader = db.split("valid"),
    l = info.seq / m,
    eod = db.tokenizer.eod;
  const items: { ids: Int32Array; targets: Int32Array; mask: Float32Array }[][] = [[], []];
  const sums = [0, 0];
  let tokens = 0;
  const flush = (which: number) => {
    const list = items[which];
    if (!list.length) return;
    const B = list.length,
      ids = new Int32Array(B * n).fill(eod),
      targets = new Int32Array(B * n).fill(eod),
      mask = new Float32Array(B * n);
    list.forEach((it, b) => (ids.set(it.ids, b * n), targets.set(it.targets, b * n), mask.set(it.mask, b * n)));
    const res = model.forward({ B, n, ids, targets, mask });
    sums[which] += res.loss * res.tokens;
    if (which === 0) tokens += res.tokens;
    list.length = 0;
  };
  for (let i = 0; i < info.samples; i++) {
    const tok = reader.read(i * info.seq, i * info.seq + info.seq + 1);
    const nbr = db.sampleRetrieved("valid", i, k, r);
    for (let u = 0; u + 1 < l; u++) {
      const end = (u + 2) * m; // chunk u+1 = targets at input positions (u+1)m−1 … (u+2)m−2
      const a = Math.max(0, end - 1 - (n - pre));
      for (const which of [0, 1]) {
        const prefix = which === 0 ? Array.from(nbr.subarray(u * pre, (u + 1) * pre)) : [];
        const ids = Int32Array.from([...prefix, ...tok.subarray(a, end - 1)]);
        const targets = Int32Array.from([
          ...prefix.slice(1),
          ...(prefix.length ? [tok[a]] : []),
          ...tok.subarray(a + 1, end),
        ]);
        const mask = new Float32Array(ids.length);
        mask.fill(1, ids.length - m);
        items[which].push({ ids, targets, mask });
        if (items[which].length === o.batch) flush(which);
      }
    }
  }
  flush(0);
  flush(1);
  return { with: sums[0] / tokens, without: sums[1] / tokens, tokens, context: n - pre - m };
}

/** longest common run of tokens between a and any of the neighbour rows (each r tokens) */
export function longestCommonRun(a: ArrayLike<number>, nbr: ArrayLike<number>, rows: number, r: number): number {
  let best = 0;
  const prev = new Int32Array(r + 1),
    cur = new Int32Array(r + 1);
  for (let q = 0; q < rows; q++) {
    prev.fill(0);
    for (let i = 0; i < a.length; i++) {
      cur[0] = 0;
      for (let j = 0; j < r; j++) {
        cur[j + 1] = a[i] === nbr[q * r + j] ? prev[j] + 1 : 0;
        if (cur[j + 1] > best) best = cur[j + 1];
      }
      prev.set(cur);
    }
  }
  return best;
}

interface Pass {
  sum: number;
  tokens: number;
}

/** neighbours per chunk the controls read: the model's k (a GPT's config keeps one too, for bucketing) */
const kOf = (model: Model) => Math.max(1, model.config.k);

function pass(
  model: Model,
  db: Database,
  batch: number,
  o: { shift?: number; random?: number; gate?: number },
  detail?: (b: ReturnType<Loader["next"]>, losses: Float32Array, item0: number) => void,
): Pass & { items: number } {
  const c = model.config;
  const loader = new Loader(db, {
    split: "valid",
    seq: c.seq,
    batch,
    seed: 0,
    retrieval: { k: kOf(model), r: c.r },
    shiftNeighbours: o.shift,
    randomNeighbours: o.random,
  });
  const keep = model.gate;
  if (o.gate !== undefined) model.gate = o.gate;
  let sum = 0,
    tokens = 0;
  try {
    for (let done = 0; done < loader.items; ) {
      const size = Math.min(batch, loader.items - done);
      const b = loader.next(size);
      const item0 = done;
      done += size;
      const res = model.forward(model.isRetro ? b : { ...b, neighbours: undefined });
      sum += res.loss * res.tokens;
      tokens += res.tokens;
      detail?.(b, model.tokenLosses(), item0);
    }
  } finally {
    model.gate = keep;
  }
  return { sum, tokens, items: loader.items };
}

/**
 * Held-out loss under the controls above (every held-out token; `seed` picks the random neighbours). `masks`:
 * named token sets of the held-out split (1 at a token offset of the split's stream that belongs to the set),
 * whose loss is reported apart.
 */
export function evalControls(
  model: Model,
  db: Database,
  o: { batch: number; seed?: number; masks?: Record<string, Uint8Array> },
): ControlReport {
  const c = model.config,
    m = db.m,
    n = c.seq;
  const k = kOf(model),
    r = c.r,
    l = n / m;
  const masks = Object.entries(o.masks ?? {});
  // the target of position t of item i is token i·n + t + 1 of the split (the valid loader reads items in order)
  const maskPass =
    (sums: Pass[], read?: { yes: Pass[]; no: Pass[] }) =>
    (b: ReturnType<Loader["next"]>, losses: Float32Array, item0: number) => {
      for (let s = 0; s < b.B; s++) {
        const base = (item0 + s) * n + 1;
        for (let t = 0; t < n; t++) {
          masks.forEach(([, mask], i) => {
            if (!mask[base + t]) return;
            sums[i].sum += losses[s * n + t];
            sums[i].tokens++;
            if (read && t >= m - 1) {
              const u = Math.floor((t - (m - 1)) / m);
              const nb = b.neighbours!.subarray((s * l + u) * k * r, (s * l + u + 1) * k * r);
              const cell = nb.includes(b.targets[s * n + t]) ? read.yes[i] : read.no[i];
              cell.sum += losses[s * n + t];
              cell.tokens++;
            } else if (read) (read.no[i].sum += losses[s * n + t]), read.no[i].tokens++;
          });
        }
      }
    };
  const cells = () => masks.map(() => ({ sum: 0, tokens: 0 }));
  const mOwn = cells(),
    mYes = cells(),
    mNo = cells();
  const ownMasks = masks.length ? maskPass(mOwn, { yes: mYes, no: mNo }) : null;
  const buckets = OVERLAP_BUCKETS.map((upTo) => ({ upTo, sum: 0, tokens: 0, chunks: 0 }));
  const first: Pass = { sum: 0, tokens: 0 },
    yes: Pass = { sum: 0, tokens: 0 },
    no: Pass = { sum: 0, tokens: 0 };
  const own = pass(model, db, o.batch, {}, (b, losses, item0) => {
    ownMasks?.(b, losses, item0);
    for (let s = 0; s < b.B; s++) {
      for (let t = 0; t < m - 1; t++) (first.sum += losses[s * n + t]), first.tokens++;
      for (let u = 0; u < l; u++) {
        const nb = b.neighbours!.subarray((s * l + u) * k * r, (s * l + u + 1) * k * r);
        const lo = u * m + m - 1,
          hi = Math.min(n, lo + m);
        const present = new Set<number>(nb);
        let sum = 0;
        for (let t = lo; t < hi; t++) {
          sum += losses[s * n + t];
          const cell = present.has(b.targets[s * n + t]) ? yes : no;
          cell.sum += losses[s * n + t];
          cell.tokens++;
        }
        if (hi - lo < m) continue; // the last window holds only the sequence's final position: not a whole chunk
        const share = longestCommonRun(b.targets.subarray(s * n + lo, s * n + hi), nb, k, r) / m;
        for (const bk of buckets) if (share <= bk.upTo) (bk.sum += sum), (bk.tokens += m), bk.chunks++;
      }
    }
  });
  const mean = (p: Pass) => (p.tokens ? p.sum / p.tokens : NaN);
  const loss: ControlReport["loss"] = { own: mean(own) };
  const mCtl: Record<"another" | "random" | "none", Pass[]> = { another: cells(), random: cells(), none: cells() };
  if (model.isRetro) {
    const ctl = (key: "another" | "random" | "none", p: { shift?: number; random?: number; gate?: number }) =>
      (loss[key] = mean(pass(model, db, o.batch, p, masks.length ? maskPass(mCtl[key]) : undefined)));
    ctl("another", { shift: Math.max(1, Math.floor(own.items / 2)) });
    ctl("random", { random: o.seed ?? 1 });
    ctl("none", { gate: 0 });
  }
  const masked: ControlReport["masked"] = masks.length
    ? Object.fromEntries(
        masks.map(([name], i) => [
          name,
          {
            own: { loss: mean(mOwn[i]), tokens: mOwn[i].tokens },
            ...(model.isRetro
              ? { another: mean(mCtl.another[i]), random: mean(mCtl.random[i]), none: mean(mCtl.none[i]) }
              : {}),
            read: { loss: mean(mYes[i]), tokens: mYes[i].tokens },
            unread: { loss: mean(mNo[i]), tokens: mNo[i].tokens },
          },
        ]),
      )
    : undefined;
  const inContext = model.isRetro || k * c.r + 2 * m > n ? undefined : evalInContext(model, db, { batch: o.batch });
  const ppl = Object.fromEntries(
    Object.entries(loss).map(([key, v]) => [key, Math.exp(v as number)]),
  ) as ControlReport["ppl"];
  return {
    model: c.model,
    loss,
    ppl,
    tokens: own.tokens,
    noNeighboursRead: { loss: mean(first), tokens: first.tokens },
    overlap: buckets.map((bk) => ({
      upTo: bk.upTo,
      loss: bk.tokens ? bk.sum / bk.tokens : NaN,
      tokens: bk.tokens,
      chunks: bk.chunks,
    })),
    targetInNeighbours: { yes: { loss: mean(yes), tokens: yes.tokens }, no: { loss: mean(no), tokens: no.tokens } },
    ...(inContext ? { inContext } : {}),
    ...(masked ? { masked } : {}),
  };
}
