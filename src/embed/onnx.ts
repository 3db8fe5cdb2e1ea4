/**
 * A BERT-family encoder from a user-supplied local ONNX model (onnxruntime-node, CPU), as
 * Megatron embeds chunks: the chunk's text (EOD removed) → WordPiece → [CLS] + pieces[:max−2] +
 * [SEP], run the model, mean-pool the last hidden state over the real tokens except [CLS] and
 * [SEP], L2-normalise. A chunk with no WordPiece tokens gets a zero vector.
 *
 * `vocab` is either a Hugging Face tokenizer.json or a BERT vocab.txt (from which the standard
 * BERT WordPiece pipeline is assembled). The model must take int64 `input_ids` and
 * `attention_mask` (and `token_type_ids` if it declares it) and return [B, T, H] first.
 */
import * as fs from "node:fs";
import * as ort from "onnxruntime-node";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import type { EmbedderSpec } from "./embedder.ts";
import { l2normalizeRows, type Embedder } from "./embedder.ts";
import { RetroError } from "../util/errors.ts";
import { sha256File } from "../util/fsx.ts";

type OnnxSpec = Extract<EmbedderSpec, { kind: "onnx" }>;

/** The tokenizer.json of a standard BERT WordPiece tokenizer, built from a vocab.txt. */
export function bertTokenizerJson(vocabTxt: string, lowercase: boolean): object {
  const words = fs.readFileSync(vocabTxt, "utf8").split(/\r?\n/);
  while (words.length && words[words.length - 1] === "") words.pop();
  const vocab: Record<string, number> = {};
  words.forEach((w, i) => (vocab[w] = i));
  for (const t of ["[CLS]", "[SEP]", "[UNK]"])
    if (!(t in vocab)) throw new RetroError("badInput", `${vocabTxt}: the vocabulary has no ${t} token`);
  const special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].filter((t) => t in vocab);
  return {
    version: "1.0",
    added_tokens: special.map((t) => ({
      id: vocab[t],
      content: t,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
      ],
      pair: [],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [vocab["[CLS]"]], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [vocab["[SEP]"]], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}

export class OnnxEmbedder implements Embedder {
  private constructor(
    readonly id: string,
    readonly dim: number,
    private session: ort.InferenceSession,
    private tok: HfTokenizer,
    private cls: number,
    private sep: number,
    private spec: OnnxSpec,
  ) {}

  static async create(spec: EmbedderSpec): Promise<Embedder> {
    if (spec.kind !== "onnx") throw new Error("not an onnx spec");
    for (const [p, what] of [
      [spec.model, "ONNX model"],
      [spec.vocab, "tokenizer vocabulary"],
    ])
      if (!fs.existsSync(p)) throw new RetroError("notFound", `${what} not found: ${p}`);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(spec.model, { intraOpNumThreads: 2 });
    } catch (e) {
      throw new RetroError(
        "corrupt",
        `${spec.model}: cannot load the ONNX model (${(e as Error).message.split("\n")[0]})`,
      );
    }
    for (const need of ["input_ids", "attention_mask"])
      if (!session.inputNames.includes(need))
        throw new RetroError(
          "mismatch",
          `${spec.model}: the model has no "${need}" input (inputs: ${session.inputNames.join(", ")})`,
        );
    const json = spec.vocab.endsWith(".json")
      ? JSON.parse(fs.readFileSync(spec.vocab, "utf8"))
      : bertTokenizerJson(spec.vocab, spec.lowercase);
    const tok = new HfTokenizer(json, { do_lower_case: spec.lowercase });
    const cls = tok.encode("", { add_special_tokens: true }).ids[0];
    const sep = tok.encode("", { add_special_tokens: true }).ids.at(-1)!;
    const probe = new OnnxEmbedder("probe", 0, session, tok, cls, sep, spec);
    const out = await probe.run([[cls, sep]]);
    const id = `onnx-${sha256File(spec.model).slice(0, 12)}-${spec.maxLength}`;
    return new OnnxEmbedder(id, out.dims[2], session, tok, cls, sep, spec);
  }

  /** WordPiece ids of a text: [CLS] pieces[:max−2] [SEP] */
  encodeIds(text: string): number[] {
    const ids = this.tok.encode(text.replaceAll("<|endoftext|>", ""), { add_special_tokens: false }).ids;
    return [this.cls, ...ids.slice(0, this.spec.maxLength - 2), this.sep];
  }

  private async run(batch: number[][]): Promise<ort.Tensor> {
    const B = batch.length,
      T = Math.max(...batch.map((b) => b.length));
    const ids = new BigInt64Array(B * T),
      mask = new BigInt64Array(B * T);
    batch.forEach((b, i) => b.forEach((t, j) => ((ids[i * T + j] = BigInt(t)), (mask[i * T + j] = 1n))));
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", ids, [B, T]),
      attention_mask: new ort.Tensor("int64", mask, [B, T]),
    };
    if (this.session.inputNames.includes("token_type_ids"))
      feeds.token_type_ids = new ort.Tensor("int64", new BigInt64Array(B * T), [B, T]);
    const out = (await this.session.run(feeds))[this.session.outputNames[0]];
    if (out.dims.length !== 3 || out.dims[0] !== B || out.dims[1] !== T)
      throw new RetroError(
        "mismatch",
        `${this.spec.model}: first output has shape [${out.dims.join(", ")}], expected [${B}, ${T}, hidden]`,
      );
    return out;
  }

  /** Mean-pool pre-tokenized id sequences (each [CLS] … [SEP]); exposed for the fixture test. */
  async embedIds(seqs: number[][]): Promise<Float32Array> {
    const out = new Float32Array(seqs.length * this.dim);
    for (let s = 0; s < seqs.length; s += this.spec.batchSize) {
      const batch = seqs.slice(s, s + this.spec.batchSize);
      const h = (await this.run(batch)).data as Float32Array;
      const T = Math.max(...batch.map((b) => b.length)),
        H = this.dim;
      batch.forEach((b, i) => {
        const o = (s + i) * H;
        const n = b.length - 2; // tokens between [CLS] and [SEP]
        for (let t = 1; t <= n; t++) for (let j = 0; j < H; j++) out[o + j] += h[(i * T + t) * H + j] / n;
      });
    }
    l2normalizeRows(out, this.dim);
    return out;
  }

  async embed(texts: string[]): Promise<Float32Array> {
    return this.embedIds(texts.map((t) => this.encodeIds(t)));
  }
}
