// Duplicate attribute names in an element with many attributes, in linear time and without making
// strings: an open-addressing hash table of name byte ranges. The hash is seeded per process; a
// probe run longer than MAX_PROBE (only crafted collisions get there) moves that element to a Set
// of strings, so no input makes it quadratic.
import { latin1 } from './chars.ts';

const MAX_PROBE = 64;
const SMALL = 256;
const seed = (globalThis.crypto.getRandomValues(new Uint32Array(1))[0] | 1) >>> 0;

let starts = new Int32Array(SMALL); // name start + 1; 0 = empty slot
let ends = new Int32Array(SMALL);
let count = 0;
let fallback: Set<string> | undefined;

function hash(b: Uint8Array, s: number, e: number): number {
  let h = seed ^ (e - s);
  for (let i = s; i < e; i++) h = Math.imul(h ^ b[i], 0x01000193);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 13)) >>> 0;
}

function sameName(b: Uint8Array, s1: number, e1: number, s2: number, e2: number): boolean {
  if (e1 - s1 !== e2 - s2) return false;
  for (let i = 0; i < e1 - s1; i++) if (b[s1 + i] !== b[s2 + i]) return false;
  return true;
}

/** Starts a new element. */
export function attrSetReset(): void {
  if (count === 0 && fallback === undefined) return;
  if (starts.length > SMALL) { starts = new Int32Array(SMALL); ends = new Int32Array(SMALL); } else starts.fill(0);
  count = 0;
  fallback = undefined;
}

/** Adds the name b[s, e); returns false if the element already has it. */
export function attrSetAdd(b: Buffer, s: number, e: number): boolean {
  if (fallback !== undefined) {
    const key = latin1(b, s, e);
    if (fallback.has(key)) return false;
    fallback.add(key);
    return true;
  }
  if ((count + 1) * 2 > starts.length) grow(b);
  const mask = starts.length - 1;
  let i = hash(b, s, e) & mask;
  for (let probe = 0; ; probe++) {
    const st = starts[i];
    if (st === 0) break;
    if (sameName(b, st - 1, ends[i], s, e)) return false;
    if (probe === MAX_PROBE) return toFallback(b, s, e);
    i = (i + probe + 1) & mask; // triangular probing: no primary clustering, visits every slot
  }
  starts[i] = s + 1;
  ends[i] = e;
  count++;
  return true;
}

function grow(b: Buffer): void {
  const os = starts, oe = ends;
  starts = new Int32Array(os.length * 2);
  ends = new Int32Array(os.length * 2);
  const mask = starts.length - 1;
  for (let j = 0; j < os.length; j++) {
    if (os[j] === 0) continue;
    let i = hash(b, os[j] - 1, oe[j]) & mask;
    for (let probe = 0; starts[i] !== 0; probe++) i = (i + probe + 1) & mask;
    starts[i] = os[j];
    ends[i] = oe[j];
  }
}

function toFallback(b: Buffer, s: number, e: number): boolean {
  fallback = new Set();
  for (let j = 0; j < starts.length; j++) if (starts[j] !== 0) fallback.add(latin1(b, starts[j] - 1, ends[j]));
  return attrSetAdd(b, s, e);
}
