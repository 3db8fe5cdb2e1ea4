/** placeholder replaced below */
import type { EmbedderSpec } from "../db/config.ts";
import type { Embedder } from "./embedder.ts";
import { RetroError } from "../util/errors.ts";
export class OnnxEmbedder {
  static async create(_spec: EmbedderSpec): Promise<Embedder> {
    throw new RetroError("usage", "onnx embedder not available yet");
  }
}
