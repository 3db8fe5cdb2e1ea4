/** Option parsers shared by the commands: a bad value is a usage error (exit 2) naming it. */
import { RetroError } from "../util/errors.ts";

export const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new RetroError("usage", `not an integer: ${v}`);
  return n;
};
export const num = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new RetroError("usage", `not a number: ${v}`);
  return n;
};
/** a repeatable option's values */
export function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}
