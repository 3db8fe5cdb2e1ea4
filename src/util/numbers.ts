/**
 * The one strict reading of numbers a user gives (CLI flags and config keys alike): an integer is digits only
 * (no trailing text, no exponent, within the safe range), a number is a plain decimal (no NaN, no Infinity),
 * and the error names the flag or key and its valid range (a usage error, exit 2).
 */
import { RetroError } from "./errors.ts";

const INT = /^[+-]?\d+$/;
const NUM = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

export interface Range {
  min?: number;
  max?: number;
  /** exclusive lower bound */
  above?: number;
  /** exclusive upper bound */
  below?: number;
}

export function rangeText(r: Range): string {
  const lo = r.min !== undefined ? `≥ ${r.min}` : r.above !== undefined ? `> ${r.above}` : "";
  const hi = r.max !== undefined ? `≤ ${r.max}` : r.below !== undefined ? `< ${r.below}` : "";
  return [lo, hi].filter(Boolean).join(" and ");
}

function inRange(n: number, r: Range): boolean {
  return !(
    (r.min !== undefined && n < r.min) ||
    (r.max !== undefined && n > r.max) ||
    (r.above !== undefined && !(n > r.above)) ||
    (r.below !== undefined && !(n < r.below))
  );
}

/** an integer value of `what` (a flag or a config key), in `r` */
export function checkInt(v: unknown, what: string, r: Range = {}): number {
  const n = typeof v === "string" ? (INT.test(v.trim()) ? Number(v) : NaN) : typeof v === "number" ? v : NaN;
  const must = `an integer${rangeText(r) ? " " + rangeText(r) : ""}`;
  if (!Number.isSafeInteger(n) || !inRange(n, r))
    throw new RetroError("usage", `${what} must be ${must}, got ${typeof v === "string" ? v : JSON.stringify(v)}`);
  return n;
}

/** a finite number value of `what`, in `r` */
export function checkNum(v: unknown, what: string, r: Range = {}): number {
  const n = typeof v === "string" ? (NUM.test(v.trim()) ? Number(v) : NaN) : typeof v === "number" ? v : NaN;
  const must = `a number${rangeText(r) ? " " + rangeText(r) : ""}`;
  if (!Number.isFinite(n) || !inRange(n, r))
    throw new RetroError("usage", `${what} must be ${must}, got ${typeof v === "string" ? v : JSON.stringify(v)}`);
  return n;
}

/** seeds: the generators take 32-bit seeds; a larger value would be silently wrapped */
export const SEED_RANGE: Range = { min: 0, max: 2 ** 32 - 1 };
