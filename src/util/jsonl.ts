/** JSON Lines already in memory: each non-blank line parsed, a bad one a one-line error naming file:line. */
import { RetroError } from "./errors.ts";

export function jsonLines(text: string, file: string, hint = ""): { line: number; value: unknown }[] {
  const out: { line: number; value: unknown }[] = [];
  text.split("\n").forEach((l, i) => {
    if (!l.trim()) return;
    try {
      out.push({ line: i + 1, value: JSON.parse(l) });
    } catch (e) {
      throw new RetroError("badInput", `${file}:${i + 1}: not JSON (${(e as Error).message})${hint}`);
    }
  });
  return out;
}
