/**
 * Option parsers shared by the commands, on the strict number rules of src/util/numbers.ts (config keys are
 * checked by the same functions, so a key and its flag fail alike).
 */
import { checkInt, checkNum, SEED_RANGE, type Range } from "../util/numbers.ts";

export { checkInt, checkNum, SEED_RANGE, type Range };

/** commander parsers: `int` / `num` accept any value of their kind; `intFlag` / `numFlag` name the flag and range */
export const int = (v: string): number => checkInt(v, "value");
export const num = (v: string): number => checkNum(v, "value");
export const intFlag =
  (flag: string, r: Range = {}) =>
  (v: string): number =>
    checkInt(v, flag, r);
export const numFlag =
  (flag: string, r: Range = {}) =>
  (v: string): number =>
    checkNum(v, flag, r);

/** a repeatable option's values */
export function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}
