// Attribute values read straight from bytes, with exactly the results of Number() and Date.parse()
// (those are the fallbacks for anything outside the fast paths). Callers pass plain ASCII ranges
// (no references, no UTF-8); decoded strings go through numberOf() / Date.parse().
import { latin1 } from './chars.ts';
import { core, place, release, top } from './core.ts';
import { cotTimeMs } from './time.ts';

const POW10: number[] = [];
for (let i = 0, v = 1; i <= 22; i++, v *= 10) POW10.push(v);

/** Number(text) for a plain decimal `[+-]digits[.digits]`; NaN when empty. The fast path is exact:
 *  an integer mantissa below 2^53 divided by an exactly representable power of ten is one
 *  correctly rounded IEEE operation, which is what Number() computes. */
export function parseDecimal(b: Buffer, s: number, e: number): number {
  let p = s;
  let neg = false;
  if (p < e && (b[p] === 0x2d || b[p] === 0x2b)) { neg = b[p] === 0x2d; p++; }
  let m = 0;
  let digits = 0;
  let frac = -1;
  for (; p < e; p++) {
    const c = b[p];
    if (c >= 0x30 && c <= 0x39) {
      m = m * 10 + (c - 0x30);
      digits++;
      if (frac >= 0) frac++;
    } else if (c === 0x2e && frac < 0) {
      frac = 0;
    } else {
      return numberOf(latin1(b, s, e));
    }
  }
  if (digits === 0 || m > 9007199254740991 || frac > 22) return numberOf(latin1(b, s, e));
  const v = frac > 0 ? m / POW10[frac] : m;
  return neg ? -v : v;
}

/** Number(s), except that an empty or blank value is NaN (not 0). */
export function numberOf(s: string): number {
  return s.trim().length === 0 ? NaN : Number(s);
}

/** Date.parse(text) for `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, the CoT form, computed by the scan core
 *  (protocol/wasm/scan.ts isoMs, which the scan uses for time and stale); anything else (or any
 *  doubtful calendar edge) goes to cotTimeMs. */
export function parseIsoMs(b: Buffer, s: number, e: number): number {
  const saved = top;
  try {
    const at = place(b, s, e);
    const ms = core.isoMs(at, at + e - s);
    return ms === ms ? ms : cotTimeMs(latin1(b, s, e));
  } finally {
    release(saved);
  }
}

