/**
 * docs/configuration.md from the settings tables (src/util/settings.ts): `node --import tsx scripts/configuration-docs.ts`
 * writes it; `--check` exits 1 when the file is not what the tables give (CI and test/settings.test.ts run it).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { MODEL_SETTINGS } from "../src/model/config.ts";
import { TRAIN_SETTINGS } from "../src/train/settings.ts";
import { DEFAULT_SFT_TRAIN } from "../src/sft/config.ts";
import { SAMPLING_SETTINGS } from "../src/generate/sampling.ts";
import { settingsMarkdown } from "../src/util/settings.ts";

export const CONFIG_DOC = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "docs", "configuration.md");

export function configurationMarkdown(): string {
  return [
    "# Configuration",
    "",
    "Generated from the settings tables by `node --import tsx scripts/configuration-docs.ts` — do not edit by hand.",
    "Each key is declared once, in the room that owns it; the same row gives the flag, the check of a `--config`",
    "file or a resumed run's `config.json`, and (sampling) the HTTP request field.",
    "",
    "## Model (`src/model/config.ts`, the `model` section of a run's config.json)",
    "",
    "New Retro models of `retro train` take `NEW_RETRO` over these defaults (rotary positions in the retrieval path).",
    "",
    settingsMarkdown(MODEL_SETTINGS),
    "",
    "## Training (`src/train/settings.ts`, `retro train`)",
    "",
    settingsMarkdown(TRAIN_SETTINGS),
    "",
    "## Instruction tuning (`retro sft`: the training table with these defaults)",
    "",
    "`freezeDecoder`, `freezeDecoderSteps` and `zeroCcaOut` are not flags of `retro sft`.",
    "",
    settingsMarkdown(TRAIN_SETTINGS, DEFAULT_SFT_TRAIN),
    "",
    "## Sampling (`src/generate/sampling.ts`: `retro generate` flags, `retro serve` request fields)",
    "",
    "The HTTP field is the snake_case of the key (`max_tokens`, `top_k`, `top_p`).",
    "",
    settingsMarkdown(SAMPLING_SETTINGS),
    "",
  ].join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const want = configurationMarkdown();
  if (process.argv.includes("--check")) {
    const have = fs.existsSync(CONFIG_DOC) ? fs.readFileSync(CONFIG_DOC, "utf8") : "";
    if (have !== want) {
      console.error(`${CONFIG_DOC} is stale: run node --import tsx scripts/configuration-docs.ts`);
      process.exit(1);
    }
  } else fs.writeFileSync(CONFIG_DOC, want);
}
