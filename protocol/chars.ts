// Byte constants shared by the framer and the TAK protocol codec, and what the JS side needs to
// make strings from ranges the scan core (protocol/wasm/scan.ts) has validated: references
// decoded, white space normalised. The byte classes and UTF-8 checks of the pass itself live in
// the core. Everything works on bytes (Uint8Array indexes); nothing here allocates per byte.

export const TAB = 0x09;
export const LF = 0x0a;
export const CR = 0x0d;
export const SP = 0x20;
export const BANG = 0x21; // !
export const DQ = 0x22; // "
export const HASH = 0x23; // #
export const AMP = 0x26; // &
export const SQ = 0x27; // '
export const DASH = 0x2d; // -
export const SLASH = 0x2f; // /
export const SEMI = 0x3b; // ;
export const LT = 0x3c; // <
export const EQ = 0x3d; // =
export const GT = 0x3e; // >
export const QM = 0x3f; // ?
export const LSQB = 0x5b; // [
export const RSQB = 0x5d; // ]

/** Is the code point an XML 1.0 Char? */
export function isXmlChar(cp: number): boolean {
  if (cp < 0x20) return cp === TAB || cp === LF || cp === CR;
  if (cp <= 0xd7ff) return true;
  if (cp < 0xe000) return false;
  if (cp <= 0xfffd) return true;
  return cp >= 0x10000 && cp <= 0x10ffff;
}

/** Code point of the last reference parsed by parseRef. */
export let refCodePoint = 0;

/** Parses a reference starting at b[p] === '&': one of the five predefined entities or a decimal /
 *  hexadecimal character reference of an XML Char. There is no DTD, so any other name is an error:
 *  nothing is ever expanded. Returns the index after ';', or -1. */
export function parseRef(b: Uint8Array, p: number, n: number): number {
  let q = p + 1;
  if (q >= n) return -1;
  let c = b[q];
  if (c === HASH) {
    q++;
    let cp = 0;
    let digits = 0;
    if (q < n && b[q] === 0x78 /* x */) {
      q++;
      for (; q < n; q++) {
        c = b[q];
        let v: number;
        if (c >= 0x30 && c <= 0x39) v = c - 0x30;
        else if (c >= 0x61 && c <= 0x66) v = c - 0x57;
        else if (c >= 0x41 && c <= 0x46) v = c - 0x37;
        else break;
        cp = cp * 16 + v;
        if (cp > 0x10ffff) return -1;
        digits++;
      }
    } else {
      for (; q < n; q++) {
        c = b[q];
        if (c < 0x30 || c > 0x39) break;
        cp = cp * 10 + (c - 0x30);
        if (cp > 0x10ffff) return -1;
        digits++;
      }
    }
    if (digits === 0 || q >= n || b[q] !== SEMI || !isXmlChar(cp)) return -1;
    refCodePoint = cp;
    return q + 1;
  }
  // predefined entities: lt gt amp quot apos
  const rest = n - q;
  if (c === 0x6c /* l */ || c === 0x67 /* g */) {
    if (rest < 3 || b[q + 1] !== 0x74 /* t */ || b[q + 2] !== SEMI) return -1;
    refCodePoint = c === 0x6c ? LT : GT;
    return q + 3;
  }
  if (c === 0x61 /* a */) {
    if (rest >= 4 && b[q + 1] === 0x6d && b[q + 2] === 0x70 && b[q + 3] === SEMI) {
      refCodePoint = AMP;
      return q + 4;
    }
    if (rest >= 5 && b[q + 1] === 0x70 && b[q + 2] === 0x6f && b[q + 3] === 0x73 && b[q + 4] === SEMI) {
      refCodePoint = SQ;
      return q + 5;
    }
    return -1;
  }
  if (c === 0x71 /* q */) {
    if (rest >= 5 && b[q + 1] === 0x75 && b[q + 2] === 0x6f && b[q + 3] === 0x74 && b[q + 4] === SEMI) {
      refCodePoint = DQ;
      return q + 5;
    }
  }
  return -1;
}

/** Decodes an attribute value already validated by the scan: references replaced, literal
 *  tab/LF/CR normalised to a space (CR LF counts once), as XML 1.0 §3.3.3 requires of a parser. */
export function decodeAttr(b: Buffer, s: number, e: number): string {
  let out = '';
  let run = s;
  let p = s;
  while (p < e) {
    const c = b[p];
    if (c === AMP) {
      if (run < p) out += b.toString('utf8', run, p);
      p = parseRef(b, p, e);
      out += String.fromCodePoint(refCodePoint);
      run = p;
    } else if (c === TAB || c === LF || c === CR) {
      if (run < p) out += b.toString('utf8', run, p);
      out += ' ';
      p += c === CR && p + 1 < e && b[p + 1] === LF ? 2 : 1;
      run = p;
    } else {
      p++;
    }
  }
  if (run < e) out += b.toString('utf8', run, e);
  return out;
}

/** Buffer's own slice functions: Buffer#toString(enc, s, e) without its argument handling. */
interface Slices { latin1Slice(s: number, e: number): string; utf8Slice(s: number, e: number): string }
export function latin1(b: Buffer, s: number, e: number): string {
  return (b as unknown as Slices).latin1Slice(s, e);
}
export function utf8(b: Buffer, s: number, e: number): string {
  return (b as unknown as Slices).utf8Slice(s, e);
}
