/**
 * Settings tables: each setting of a room (model, train, sampling, …) declared once — key, kind, bounds, default,
 * help — as one row of a typed table (nanoGPT's `GPTConfig` with `configurator.py` as the model). From the table
 * come the TypeScript type of the values (`SettingValues`), the defaults, the validation of a config (a flag, a
 * `--config` file, a resumed run's config.json or an HTTP request go through the same checks), the CLI flags
 * (src/cli/flags.ts) and the configuration tables of the docs (`settingsMarkdown`, docs/configuration.md).
 */
import { RetroError } from "./errors.ts";
import { checkInt, checkNum, rangeText, type Range } from "./numbers.ts";

interface Common {
  help: string;
  /** false: set by the program (e.g. from the database), not by a flag */
  flag?: false;
  /** the flag's name when it is not the kebab-case of the key */
  flagName?: string;
  /** the default as help and docs show it, when the program derives it from another key (e.g. "2 × chunk") */
  defaultText?: string;
}
export interface IntSetting extends Common, Range {
  kind: "int";
  default: number;
  /** what a config written before the key existed meant by its absence (default: `default`) */
  legacy?: number;
}
export interface NumSetting extends Common, Range {
  kind: "num";
  default: number;
  legacy?: number;
}
export interface BoolSetting extends Common {
  kind: "bool";
  default: boolean;
  /** also a `--no-<flag>` (to turn off what a config file or a recipe turned on) */
  negatable?: boolean;
  legacy?: boolean;
}
export interface ChoiceSetting<C extends string = string> extends Common {
  kind: "choice";
  choices: readonly C[];
  default: C;
  legacy?: C;
}
export interface IntListSetting extends Common {
  kind: "intList";
  /** bounds of each element */
  min?: number;
  default: number[];
  legacy?: number[];
}
export interface TextSetting extends Common {
  kind: "text";
  default: string;
  legacy?: string;
}
export type Setting = IntSetting | NumSetting | BoolSetting | ChoiceSetting | IntListSetting | TextSetting;
export type SettingsTable = Readonly<Record<string, Setting>>;

/** The value type of one row. */
export type SettingValue<S> = S extends { kind: "int" | "num" }
  ? number
  : S extends { kind: "bool" }
    ? boolean
    : S extends { kind: "choice"; choices: readonly (infer C)[] }
      ? C
      : S extends { kind: "intList" }
        ? number[]
        : S extends { kind: "text" }
          ? string
          : never;

/** The typed record of a table's values. */
export type SettingValues<T extends SettingsTable> = { -readonly [K in keyof T]: SettingValue<T[K]> };

/** Declare a table (keeps the literal types of choices for `SettingValues`). */
export function defineSettings<const T extends SettingsTable>(table: T): T {
  return table;
}

/** A table's defaults, as a fresh record. */
export function defaultsOf<T extends SettingsTable>(table: T): SettingValues<T> {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(table)) out[k] = Array.isArray(s.default) ? [...s.default] : s.default;
  return out as SettingValues<T>;
}

/** What a config written before each key existed meant by its absence (`legacy`, else the default). */
export function legacyOf<T extends SettingsTable>(table: T): SettingValues<T> {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(table)) out[k] = s.legacy ?? s.default;
  return out as SettingValues<T>;
}

/** the keys of `input` that no table declares (besides `extra`) */
export function unknownKeys(input: object, tables: readonly SettingsTable[], extra: readonly string[] = []): string[] {
  return Object.keys(input).filter((k) => !extra.includes(k) && !tables.some((t) => k in t));
}

const rangeOf = (s: IntSetting | NumSetting): Range => ({ min: s.min, max: s.max, above: s.above, below: s.below });

/** Check one value against its row; returns it (numbers given as strings are read strictly). */
export function checkSetting(s: Setting, v: unknown, what: string): unknown {
  const bad = (must: string) => {
    throw new RetroError("usage", `${what} must be ${must}, got ${JSON.stringify(v)}`);
  };
  switch (s.kind) {
    case "bool":
      if (typeof v !== "boolean") bad("true or false");
      return v;
    case "text":
      if (typeof v !== "string") bad("a string");
      return v;
    case "choice":
      if (typeof v !== "string" || !s.choices.includes(v)) bad(s.choices.map((x) => JSON.stringify(x)).join(" or "));
      return v;
    case "intList":
      if (!Array.isArray(v) || v.some((x) => !Number.isInteger(x) || (s.min !== undefined && x < s.min)))
        bad(`a list of integers${s.min !== undefined ? ` ≥ ${s.min}` : ""}`);
      return v;
    case "int":
      return checkInt(v, what, rangeOf(s));
    case "num":
      return checkNum(v, what, rangeOf(s));
  }
}

/**
 * Check each key of `table` in `values` (all must be present, or with `givenOnly` those present); a message names
 * the value as `name(key)` — `train config: lr`, `config.query.seq`, `max_tokens` — and what it must be.
 */
export function validateSettings(
  values: object,
  table: SettingsTable,
  name: (key: string) => string,
  o: { givenOnly?: boolean } = {},
): void {
  for (const [k, s] of Object.entries(table)) {
    const v = (values as Record<string, unknown>)[k];
    if (!(o.givenOnly && v === undefined)) checkSetting(s, v, name(k));
  }
}

/**
 * Defaults, then `input` on top (undefined and null values skipped), unknown keys refused, every value checked:
 * the typed values of the table.
 */
export function resolveSettings<T extends SettingsTable>(
  table: T,
  input: Record<string, unknown>,
  what: string,
  defaults: SettingValues<T> = defaultsOf(table),
): SettingValues<T> {
  const unknown = unknownKeys(input, [table]);
  if (unknown.length)
    throw new RetroError(
      "usage",
      `unknown ${what} key(s): ${unknown.join(", ")} (known: ${Object.keys(table).join(", ")})`,
    );
  const out: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(input)) if (v !== undefined && v !== null) out[k] = v;
  validateSettings(out, table, (k) => `${what}: ${k}`);
  return out as SettingValues<T>;
}

/** kebab-case flag of a key (`minLr` → `min-lr`, `enc_layers` → `enc-layers`) */
export const flagOf = (key: string, s?: Setting): string =>
  s?.flagName ?? key.replace(/_/g, "-").replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

/** What a row accepts, in words ("an integer ≥ 1", "fp32 | bf16"). */
export function acceptsText(s: Setting): string {
  switch (s.kind) {
    case "int":
    case "num": {
      const r = rangeText(rangeOf(s));
      return `${s.kind === "int" ? "integer" : "number"}${r ? " " + r : ""}`;
    }
    case "bool":
      return "true | false";
    case "text":
      return "text";
    case "choice":
      return s.choices.join(" \\| ");
    case "intList":
      return `list of integers${s.min !== undefined ? ` ≥ ${s.min}` : ""}`;
  }
}

/**
 * A Markdown table of a settings table: key, flag (unless `o.flags` is false: a config-file section), accepted
 * values, default, meaning.
 */
export function settingsMarkdown(
  table: SettingsTable,
  defaults: Record<string, unknown> = defaultsOf(table),
  o: { flags?: boolean } = {},
): string {
  const flags = o.flags ?? true;
  const rows = flags
    ? ["| key | flag | accepts | default | meaning |", "|---|---|---|---|---|"]
    : ["| key | accepts | default | meaning |", "|---|---|---|---|"];
  for (const [k, s] of Object.entries(table)) {
    const flag = s.flag === false ? "—" : `\`--${flagOf(k, s)}\``;
    const shown = s.defaultText ?? `\`${JSON.stringify(defaults[k])}\``;
    const rest = `${acceptsText(s)} | ${shown} | ${s.help.replace(/\|/g, "\\|")} |`;
    rows.push(flags ? `| \`${k}\` | ${flag} | ${rest}` : `| \`${k}\` | ${rest}`);
  }
  return rows.join("\n");
}

/** The rows of `table` named in `keys` (a command that takes only some of a room's settings). */
export function pickSettings<T extends SettingsTable, K extends keyof T & string>(
  table: T,
  keys: readonly K[],
): Pick<T, K> {
  return Object.fromEntries(Object.entries(table).filter(([k]) => keys.includes(k as K))) as Pick<T, K>;
}

/** The rows of `table` not named in `keys`. */
export function omitSettings<T extends SettingsTable, K extends keyof T & string>(
  table: T,
  keys: readonly K[],
): Omit<T, K> {
  return Object.fromEntries(Object.entries(table).filter(([k]) => !keys.includes(k as K))) as Omit<T, K>;
}
