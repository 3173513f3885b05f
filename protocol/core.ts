// The WebAssembly scan core (protocol/wasm/scan.ts, built to scan.wasm by the Makefile): loaded
// synchronously at import, one instance per process. This module owns its memory: bytes to scan
// are copied in above DATA, stacked so that a nested use (a sink calling scan() on another Buffer
// while the framer's chunk is still in memory) never overwrites what an outer caller still reads.
// Layout constants must match protocol/wasm/scan.ts.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

interface CoreExports {
  memory: WebAssembly.Memory;
  init(): void;
  setSeed(lo: number, hi: number): void;
  /** one whole frame in [s, n): its end, or -1 (reason/offset in the MISC slots); the record of
   *  its lazily read values at `rec` (0: none), its length in M_RECLEN (-1: none) */
  scanFrame(s: number, n: number, scratch: number, rec: number): number;
  /** framer fast path from p in a chunk ending at n: 1 = a well-formed event at M_POS..M_END;
   *  its record as scanFrame's */
  nextFrame(p: number, n: number, max: number, scratch: number, rec: number): number;
  /** Date.parse of a plain CoT time in [s, e), NaN when not that form */
  isoMs(s: number, e: number): number;
}

const wasmModule = new WebAssembly.Module(readFileSync(new URL('./wasm/scan.wasm', import.meta.url)));
export const core = new WebAssembly.Instance(wasmModule, {}).exports as unknown as CoreExports;
core.init();
{
  const r = randomBytes(8); // duplicate-attribute hash seed (crafted collisions need it)
  core.setSeed(r.readUInt32LE(0), r.readUInt32LE(4));
}

/** i32 slot indexes of the results (byte address / 4) */
export const FS = 512, FE = 529, FF = 546;
const MISC = 576;
export const M_ERR = MISC, M_ERROFF = MISC + 1, M_END = MISC + 2, M_POS = MISC + 3, M_NDESTS = MISC + 4,
  M_DESTS = MISC + 5, M_MSTART = MISC + 6, M_MEND = MISC + 7, M_NMORE = MISC + 8, M_MORE = MISC + 9,
  M_LINK = MISC + 10, M_LAZYF = MISC + 14, M_RECLEN = MISC + 23;
/** f64 slot: stale as epoch ms, NaN when absent or to be read by cotTimeMs */
export const STALE_MS = (2304 + 64) / 8;
/** f64 slot: time as epoch ms, likewise */
export const TIME_MS = (2304 + 96) / 8;
/** i32 slots: intern table slot of uid, type, callsign, endpoint, link uid (wasm/scan.ts intern()):
 *  i (the table has the value), ~i (a miss: the host makes the string, then validates slot i),
 *  I_NONE (absent or not interned) */
export const M_IDS = MISC + 18;
export const I_NONE = 0x40000000;
/** i32 index of slot i's length word is ISLOT_LEN + i * ISLOT_WORDS */
export const ISLOTS = 1024, ISLOT_WORDS = 128 / 4, ISLOT_LEN = 65536 / 4 + 1;

/** the staging area for records of lazily read values (wasm/scan.ts record(); protocol/scan.ts) */
export const STAGE = 65536 + ISLOTS * 128, STAGE_CAP = 32768;

const DATA = STAGE + STAGE_CAP;
/** SIMD loads read up to 15 bytes past a range; the scratch area after the data covers that */
const SLACK = 64;

/** views of the wasm memory; memory.grow() detaches them (length 0), refresh() makes new ones.
 *  The memory starts at 2 MiB (asconfig.json) so that normal use never grows it: the first
 *  ArrayBuffer detached in a process makes V8 check typed arrays for detachment from then on. */
export let mem8 = new Uint8Array(core.memory.buffer);
export let mem32 = new Int32Array(core.memory.buffer);
export let memF64 = new Float64Array(core.memory.buffer);
/** the memory as a Buffer (strings are made from it) */
export let memBuf = Buffer.from(core.memory.buffer);
export function refresh(): void {
  mem8 = new Uint8Array(core.memory.buffer);
  mem32 = new Int32Array(core.memory.buffer);
  memF64 = new Float64Array(core.memory.buffer);
  memBuf = Buffer.from(core.memory.buffer);
}

/** first free byte above the data placed by callers still running */
export let top = DATA;

/** Copies b[s, e) into wasm memory at `top` and reserves it; returns its address. The caller
 *  restores `top` with release() when done. The core's scratch starts at scratchAt(). */
export function place(b: Uint8Array, s: number, e: number): number {
  const at = reserve(e - s);
  if (s === 0 && e === b.length) mem8.set(b, at);
  else mem8.set(b.subarray(s, e), at);
  return at;
}

/** place() of a[0, alen) followed by all of b, contiguous (a frame's start kept from the last
 *  chunk, then the next chunk); returns the address of a[0] (b[0] is at that + alen) */
export function placeJoined(a: Uint8Array, alen: number, b: Uint8Array): number {
  const at = reserve(alen + b.length);
  mem8.set(a.subarray(0, alen), at);
  mem8.set(b, at + alen);
  return at;
}

function reserve(len: number): number {
  const at = top;
  const need = at + len + SLACK + 65536;
  if (need > mem8.length) {
    core.memory.grow(Math.ceil((need - mem8.length) / 65536));
    refresh();
  }
  top = (at + len + 15) & ~15;
  return at;
}

export function release(to: number): void {
  top = to;
}

/** where the core may grow its stacks and tables (above everything placed) */
export function scratchAt(): number {
  return top + SLACK;
}
