// Attribute values read straight from bytes, with exactly the results of Number() and Date.parse()
// (those are the fallbacks for anything outside the fast paths). Callers pass plain ASCII ranges
// (no references, no UTF-8); decoded strings go through numberOf() / Date.parse().
import { latin1 } from './chars.ts';

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

function d2(b: Uint8Array, p: number): number {
  const x = b[p] - 0x30, y = b[p + 1] - 0x30;
  return x >= 0 && x <= 9 && y >= 0 && y <= 9 ? x * 10 + y : -1;
}

/** Date.parse(text) for `YYYY-MM-DDTHH:MM:SS[.f{1,3}]Z`, the CoT form; anything else (or any
 *  doubtful calendar edge) goes to Date.parse. */
export function parseIsoMs(b: Buffer, s: number, e: number): number {
  const len = e - s;
  if (len < 20 || len > 24 || b[s + 4] !== 0x2d || b[s + 7] !== 0x2d || b[s + 10] !== 0x54 ||
    b[s + 13] !== 0x3a || b[s + 16] !== 0x3a || b[e - 1] !== 0x5a) return Date.parse(latin1(b, s, e));
  const c1 = d2(b, s), c2 = d2(b, s + 2), mo = d2(b, s + 5), d = d2(b, s + 8);
  const h = d2(b, s + 11), mi = d2(b, s + 14), sec = d2(b, s + 17);
  if (c1 < 0 || c2 < 0 || mo < 1 || mo > 12 || d < 1 || d > 28 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59) {
    return Date.parse(latin1(b, s, e));
  }
  let ms = 0;
  if (len > 20) {
    if (b[s + 19] !== 0x2e || len === 21) return Date.parse(latin1(b, s, e));
    let scale = 100;
    for (let p = s + 20; p < e - 1; p++) {
      const c = b[p] - 0x30;
      if (c < 0 || c > 9) return Date.parse(latin1(b, s, e));
      ms += c * scale;
      scale /= 10;
    }
  }
  // days from 1970-01-01 of the proleptic Gregorian date (H. Hinnant's days_from_civil)
  let y = c1 * 100 + c2;
  if (mo <= 2) y--;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  const days = era * 146097 + doe - 719468;
  return days * 86400000 + h * 3600000 + mi * 60000 + sec * 1000 + ms;
}
