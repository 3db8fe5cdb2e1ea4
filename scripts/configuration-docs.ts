/**
 * docs/configuration.md from the settings tables (src/util/settings.ts) and docs/errors.md from the error table: `node
 * --import tsx scripts/configuration-docs.ts`
 * writes it; `--check` exits 1 when the file is not what the tables give (CI and test/unit/settings.test.ts run it).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { MODEL_SETTINGS } from "../src/model/config.ts";
import { TRAIN_SETTINGS } from "../src/train/settings.ts";
import { DEFAULT_SFT_TRAIN } from "../src/sft/config.ts";
import { SAMPLING_SETTINGS } from "../src/generate/sampling.ts";
import { settingsMarkdown } from "../src/util/settings.ts";
import { ERROR_KINDS } from "../src/util/errors.ts";
import { DB_SETTINGS, QUERY_SETTINGS } from "../src/db/config.ts";
import { DATASET_SETTINGS } from "../src/data/document.ts";
import { INDEX_SETTINGS } from "../src/search/settings.ts";
import { EMBEDDER_SETTINGS } from "../src/embed/embedder.ts";
import { BPE_SETTINGS } from "../src/tokenizer/bpe.ts";

const DOCS = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "docs");
export const CONFIG_DOC = path.join(DOCS, "configuration.md");
export const ERRORS_DOC = path.join(DOCS, "errors.md");

export function errorsMarkdown(): string {
  const rows = Object.entries(ERROR_KINDS).map(
    ([k, v]) => `| \`${k}\` | ${v.exit} | ${v.http} | ${v.type} | ${v.meaning} |`,
  );
  return [
    "# Errors and exit codes",
    "",
    "Generated from `ERROR_KINDS` (src/util/errors.ts) by `node --import tsx scripts/configuration-docs.ts`. Every " +
      "failure",
    "caused by input is a `RetroError` of one kind: the CLI prints one line (no stack trace) and exits with the " +
      "kind's code;",
    "`retro serve` answers with its HTTP status and OpenAI error type (a `busy` answer carries `Retry-After`).",
    "",
    "| kind | exit | HTTP | error type | meaning |",
    "|---|---|---|---|---|",
    ...rows,
    "",
    "Every number a user gives — flag, config key or request field — is read by one strict parser " +
      "(`src/util/numbers.ts`)",
    "against the range its settings table declares (docs/configuration.md): `12abc`, `1e30` and `NaN` are refused, " +
      "and the",
    "message names the flag or key and its range. `test/e2e/malformed.test.ts` is the table of bad inputs (command " +
      "lines, each",
    "with its exit code and message) and a fuzz pass over damaged artefacts, every reading command ending with a",
    "documented exit code, never a signal or a trace.",
    "",
  ].join("\n");
}

export function configurationMarkdown(): string {
  return [
    "# Configuration",
    "",
    "Generated from the settings tables by `node --import tsx scripts/configuration-docs.ts` — do not edit by hand.",
    "Each key is declared once, in the room that owns it; the same row gives the flag, the check of a `--config`",
    "file or a resumed run's `config.json`, and (sampling) the HTTP request field.",
    "",
    "## Database (`retro db build --config FILE`: `src/db/config.ts`)",
    "",
    "Keys of the config file (`--config`), top level besides `datasets`, `tokenizer`, `embedder`, `index` and `query`",
    "(below); each has a flag of `retro db build`, as have the `index` and `query` keys.",
    "",
    settingsMarkdown(DB_SETTINGS),
    "",
    "### `datasets`: a list of entries (`src/data/document.ts`)",
    "",
    "Flags: `--text PATH[:WEIGHT]`, `--jsonl PATH[:WEIGHT]`, `--corpus NAME[:WEIGHT]`, `--megatron PREFIX[:WEIGHT]`",
    "(names text0, jsonl1, …; `--field`, `--skip-bad-lines` for JSONL).",
    "",
    settingsMarkdown(DATASET_SETTINGS, undefined, { flags: false }),
    "",
    '### `tokenizer`: `{ "kind": "gpt2" }` or `{ "kind": "bpe", … }` (`src/tokenizer/bpe.ts`)',
    "",
    settingsMarkdown(BPE_SETTINGS, undefined, { flags: false }),
    "",
    ...Object.entries(EMBEDDER_SETTINGS).flatMap(([kind, table]) => [
      `### \`embedder\` of kind \`${kind}\` (\`src/embed/embedder.ts\`)`,
      "",
      settingsMarkdown(table, undefined, { flags: false }),
      "",
    ]),
    "### `index` (`src/search/settings.ts`; the description picks the backend: `src/search/registry.ts`)",
    "",
    settingsMarkdown(INDEX_SETTINGS),
    "",
    "### `query`: the neighbour precompute",
    "",
    settingsMarkdown(QUERY_SETTINGS),
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
  for (const [file, want] of [
    [CONFIG_DOC, configurationMarkdown()],
    [ERRORS_DOC, errorsMarkdown()],
  ]) {
    if (process.argv.includes("--check")) {
      const have = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
      if (have !== want) {
        console.error(`${file} is stale: run node --import tsx scripts/configuration-docs.ts`);
        process.exitCode = 1;
      }
    } else fs.writeFileSync(file, want);
  }
}
