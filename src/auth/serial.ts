// One canonical form for certificate serial numbers, used everywhere serials are compared:
// lower-case hex, no leading zeros, no colons ("0" for zero). Node's peer certificate gives
// upper-case hex, openssl prints colon-hex, FreeTAKServer's JSON stores decimal integers.

/** Serials above this many hex digits are garbage, not certificates (RFC 5280 allows 20 octets). */
const MAX_HEX_DIGITS = 64;

const HEX = /^[0-9a-f]+$/;

/**
 * Canonicalize a serial number. Strings are hexadecimal (optionally `0x`-prefixed or colon-separated
 * as openssl prints them, any case); numbers and bigints are the integer value itself (decimal in JSON).
 * Throws on anything else.
 */
export function canonicalSerial(v: string | bigint | number): string {
  if (typeof v === 'bigint') {
    if (v < 0n) throw new Error(`invalid serial number: negative (${v})`);
    return check(v.toString(16), String(v));
  }
  if (typeof v === 'number') {
    // A JS number above 2^53 has already lost digits: refuse it rather than compare a wrong serial.
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`invalid serial number: ${v} (not an exact non-negative integer)`);
    return check(v.toString(16), String(v));
  }
  if (typeof v !== 'string') throw new Error(`invalid serial number: ${String(v)}`);
  let s = v.trim().toLowerCase();
  if (s.startsWith('0x')) s = s.slice(2);
  if (s.includes(':')) {
    const parts = s.split(':');
    if (parts.some((p) => p.length === 0 || p.length > 2)) throw new Error(`invalid serial number: ${JSON.stringify(v)}`);
    s = parts.map((p) => p.padStart(2, '0')).join('');
  }
  if (!HEX.test(s)) throw new Error(`invalid serial number: ${JSON.stringify(v)} (expected hex)`);
  return check(s.replace(/^0+(?=.)/, ''), v);
}

function check(hex: string, original: string): string {
  if (hex.length > MAX_HEX_DIGITS) throw new Error(`invalid serial number: ${original.slice(0, 80)} (too long)`);
  return hex;
}

/** Canonical hex back to a bigint (for decimal display and DER encoding). */
export function serialToBigInt(hex: string): bigint {
  return BigInt('0x' + canonicalSerial(hex));
}

/** openssl-style colon hex (upper case, whole bytes), for humans comparing with `openssl x509 -serial`. */
export function colonSerial(hex: string): string {
  let h = canonicalSerial(hex);
  if (h.length % 2) h = '0' + h;
  return h.toUpperCase().match(/../g)!.join(':');
}
