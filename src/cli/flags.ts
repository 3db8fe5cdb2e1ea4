/**
 * CLI flags from settings tables (src/util/settings.ts): one flag per row, kebab-case of its key, parsed and
 * range-checked by the row's own declaration, the command's default in the help.
 */
import { Option, type Command } from "commander";
import { checkSetting, flagOf, type SettingsTable } from "../util/settings.ts";
import { checkInt } from "../util/numbers.ts";

const attrOf = (flag: string): string => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Add one flag per row of `table` (rows with `flag: false` and keys in `skip` left out). */
export function addSettingFlags(
  cmd: Command,
  table: SettingsTable,
  defaults: Record<string, unknown> = {},
  skip: readonly string[] = [],
): Command {
  for (const [key, s] of Object.entries(table)) {
    if (s.flag === false || skip.includes(key)) continue;
    const flag = flagOf(key, s),
      d = key in defaults ? defaults[key] : s.default;
    const shown = key in defaults || s.defaultText === undefined ? JSON.stringify(d) : s.defaultText;
    const help = s.help + (d !== undefined ? ` (default ${shown})` : "");
    if (s.kind === "bool") {
      cmd.option(`--${flag}`, help);
      if (s.negatable || s.default === true || d === true) cmd.option(`--no-${flag}`, `not --${flag}`);
      continue;
    }
    const arg =
      s.kind === "choice" ? s.choices.join("|") : s.kind === "intList" ? "list" : s.kind === "text" ? "text" : "n";
    const opt = new Option(`--${flag} <${arg}>`, help);
    if (s.kind === "choice") opt.choices(s.choices);
    else if (s.kind === "intList")
      opt.argParser((v: string) =>
        checkSetting(
          s,
          v.split(",").map((x) => checkInt(x.trim(), `--${flag}`, { min: s.min })),
          `--${flag}`,
        ),
      );
    else if (s.kind !== "text") opt.argParser((v: string) => checkSetting(s, v, `--${flag}`));
    cmd.addOption(opt);
  }
  return cmd;
}

/** The values the flags of `table` were given (absent flags left out), keyed by setting key. */
export function settingValues(opts: Record<string, unknown>, table: SettingsTable): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(table)) {
    if (s.flag === false) continue;
    const v = opts[attrOf(flagOf(key, s))];
    if (v !== undefined) out[key] = v;
  }
  return out;
}
