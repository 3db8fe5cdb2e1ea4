/**
 * The parameter set of GPT and Retro, named and shaped exactly as the PyTorch peer's `named_parameters()`
 * (Linear weights [out, in], Attention.kv packs K then V), stored in one flat Float32Array so that the
 * optimizer, gradient norm and checkpoint code work on one buffer.
 */
import type { ModelConfig } from "./config.ts";
import { positions } from "./config.ts";
import { Rng } from "../util/rng.ts";

/** decoder: the GPT part (loaded when retro-fitting); retrieval: encoder + chunked cross-attention */
export type ParamGroup = "decoder" | "retrieval";

export interface ParamSpec {
  name: string;
  shape: number[];
  group: ParamGroup;
  /** weight decay applies (matrices and embeddings; not biases or LayerNorm, as in nanoGPT) */
  decay: boolean;
  init: "normal" | "zeros" | "ones";
}

export interface Param extends ParamSpec {
  offset: number;
  size: number;
  /** views into the flat buffers */
  data: Float32Array;
  grad: Float32Array;
}

function ln(name: string, d: number, group: ParamGroup): ParamSpec[] {
  return [
    { name: `${name}.weight`, shape: [d], group, decay: false, init: "ones" },
    { name: `${name}.bias`, shape: [d], group, decay: false, init: "zeros" },
  ];
}
function linear(name: string, out: number, inp: number, group: ParamGroup): ParamSpec[] {
  return [
    { name: `${name}.weight`, shape: [out, inp], group, decay: true, init: "normal" },
    { name: `${name}.bias`, shape: [out], group, decay: false, init: "zeros" },
  ];
}
function attention(name: string, d: number, group: ParamGroup): ParamSpec[] {
  return [
    ...linear(`${name}.q`, d, d, group),
    ...linear(`${name}.kv`, 2 * d, d, group),
    ...linear(`${name}.o`, d, d, group),
  ];
}
function mlp(name: string, d: number, group: ParamGroup): ParamSpec[] {
  return [...linear(`${name}.fc`, 4 * d, d, group), ...linear(`${name}.proj`, d, 4 * d, group)];
}

/** The parameter list in the peer's registration order. */
export function paramSpecs(c: ModelConfig): ParamSpec[] {
  const d = c.d;
  const cca = new Set(c.model === "retro" ? c.cca_layers : []);
  const specs: ParamSpec[] = [
    { name: "wte.weight", shape: [c.vocab, d], group: "decoder", decay: true, init: "normal" },
    { name: "wpe.weight", shape: [positions(c), d], group: "decoder", decay: true, init: "normal" },
  ];
  for (let i = 0; i < c.layers; i++) {
    const b = `blocks.${i}`;
    specs.push(...ln(`${b}.ln1`, d, "decoder"), ...attention(`${b}.attn`, d, "decoder"));
    if (cca.has(i + 1)) {
      specs.push(...ln(`${b}.lnc`, d, "retrieval"), ...attention(`${b}.xattn`, d, "retrieval"));
      if (c.retrieval_null_kv)
        specs.push({ name: `${b}.xattn.null_kv`, shape: [2 * d], group: "retrieval", decay: false, init: "normal" });
    }
    specs.push(...ln(`${b}.ln2`, d, "decoder"), ...mlp(`${b}.mlp`, d, "decoder"));
  }
  if (cca.size) {
    for (let j = 0; j < c.enc_layers; j++) {
      const e = `encoder.${j}`;
      specs.push(...ln(`${e}.ln1`, d, "retrieval"), ...attention(`${e}.attn`, d, "retrieval"));
      if (j === 0) specs.push(...ln(`${e}.lnx`, d, "retrieval"), ...attention(`${e}.xattn`, d, "retrieval"));
      specs.push(...ln(`${e}.ln2`, d, "retrieval"), ...mlp(`${e}.mlp`, d, "retrieval"));
    }
  }
  specs.push(...ln("lnf", d, "decoder"));
  return specs;
}

/** All parameters in one flat buffer (and their gradients in another), each with named views. */
export class ParamStore {
  readonly params: Param[];
  readonly byName = new Map<string, Param>();
  readonly data: Float32Array;
  readonly grad: Float32Array;
  readonly size: number;

  constructor(specs: ParamSpec[]) {
    let offset = 0;
    const laid = specs.map((s) => {
      const size = s.shape.reduce((a, b) => a * b, 1);
      const p = { ...s, offset, size };
      offset += size;
      return p;
    });
    this.size = offset;
    this.data = new Float32Array(offset);
    this.grad = new Float32Array(offset);
    this.params = laid.map((p) => ({
      ...p,
      data: this.data.subarray(p.offset, p.offset + p.size),
      grad: this.grad.subarray(p.offset, p.offset + p.size),
    }));
    for (const p of this.params) this.byName.set(p.name, p);
  }

  get(name: string): Param {
    const p = this.byName.get(name);
    if (!p) throw new Error(`no parameter ${name}`);
    return p;
  }

  /** weights N(0, 0.02) (as the peer), biases 0, LayerNorm 1 / 0; `only` restricts to one group */
  init(seed: number, only?: ParamGroup): void {
    const rng = new Rng(seed);
    for (const p of this.params) {
      if (only && p.group !== only) continue;
      if (p.init === "normal") for (let i = 0; i < p.size; i++) p.data[i] = 0.02 * rng.normal();
      else p.data.fill(p.init === "ones" ? 1 : 0);
    }
  }

  count(group?: ParamGroup): number {
    return this.params.filter((p) => !group || p.group === group).reduce((a, p) => a + p.size, 0);
  }
}
