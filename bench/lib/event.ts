// The bench's CoT event: an ATAK-like SA (contact endpoint, group, takv, track) padded to a chosen
// size, carrying a marker the receivers read without parsing XML:
//   <bench g="GEN" s="SENDER" k="STEP" q="SEQ" t="SEND_TIME_EPOCH_MICROSECONDS"/>
// Epoch microseconds (timeOrigin + now) are comparable across generator processes on one machine.
import { performance } from 'node:perf_hooks';

export const MARK = Buffer.from('<bench g="#');
/** the last byte of MARK, unique in a bench event */
export const MARK_BYTE = MARK[MARK.length - 1];

/** whether MARK ends at index i of b (i is where MARK_BYTE was found) */
export function markEndsAt(b: Buffer, i: number): boolean {
  const s = i - MARK.length + 1;
  if (s < 0) return false;
  for (let k = 0; k < MARK.length - 1; k++) if (b[s + k] !== MARK[k]) return false;
  return true;
}

/** wall-clock microseconds since the epoch, sub-millisecond resolution */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

export interface EventShape {
  gen: number;
  sender: number;
  uid: string;
  callsign: string;
  /** wanted total size in bytes (the padding in <remarks> is adjusted to reach it) */
  size: number;
}

/** Builds the events of one sender; only time fields and the marker change per event. */
export class EventMaker {
  private readonly head: string;
  private readonly tail: string;
  private readonly markHead: string;
  /** the size of an event (typical field widths): the wanted size, or the smallest this sender makes when that is more */
  readonly size: number;

  constructor(s: EventShape) {
    this.head = `<event version="2.0" uid="${s.uid}" type="a-f-G-U-C" time="`;
    const body = `<point lat="38.8895" lon="-77.0352" hae="12.0" ce="9.9" le="9999999.0"/><detail>` +
      `<contact endpoint="*:-1:stcp" callsign="${s.callsign}"/><__group name="Cyan" role="Team Member"/>` +
      `<takv device="cotstream-bench" platform="ATAK-CIV" os="34" version="4.10.0"/><track course="90.0" speed="1.5"/>` +
      `<status battery="88"/><uid Droid="${s.callsign}"/><remarks>`;
    this.markHead = `</remarks>${MARK.toString()}${s.gen}" s="${s.sender}" k="`;
    // measure one event with typical field widths and pad the remarks to the wanted size
    const probe = this.head + '2026-01-01T00:00:00.000Z" start="2026-01-01T00:00:00.000Z" stale="2026-01-01T00:00:00.000Z" how="m-g">' +
      body + this.markHead + '0" q="1000" t="1700000000000000"/></detail></event>';
    const pad = Math.max(0, s.size - Buffer.byteLength(probe));
    this.tail = body + 'x'.repeat(pad);
    this.size = Buffer.byteLength(probe) + pad;
  }

  /** One event; times are ISO strings computed once per batch by the caller. */
  event(timeIso: string, staleIso: string, step: number, seq: number, tUs: number): string {
    return `${this.head}${timeIso}" start="${timeIso}" stale="${staleIso}" how="m-g">${this.tail}${this.markHead}${step}" q="${seq}" t="${tUs}"/></detail></event>`;
  }
}

export interface Mark {
  gen: number;
  sender: number;
  step: number;
  seq: number;
  tUs: number;
}

const DQ = 0x22;

/** Parse decimal digits at p up to the closing quote; returns -1 when byte n is reached first. */
function digits(b: Buffer, p: number, n: number, out: { v: number }): number {
  let v = 0;
  while (p < n) {
    const c = b[p];
    if (c === DQ) { out.v = v; return p + 1; }
    v = v * 10 + (c - 48);
    p++;
  }
  return -1;
}

const tmp = { v: 0 };
// fixed attribute separators between the numbers: `" s="`, `" k="`, `" q="`, `" t="` are 4 bytes
// after the closing quote has been consumed by digits()
const SEP = 4;

/**
 * Read one marker starting at `i` (the index of MARK) in the first `n` bytes of `b`. Returns the
 * index just after it, or -1 when the data ends inside it (the caller keeps the rest for the next chunk).
 */
export function readMark(b: Buffer, i: number, m: Mark, n: number = b.length): number {
  let p = digits(b, i + MARK.length, n, tmp);
  if (p < 0) return -1;
  m.gen = tmp.v;
  if ((p = digits(b, p + SEP, n, tmp)) < 0) return -1;
  m.sender = tmp.v;
  if ((p = digits(b, p + SEP, n, tmp)) < 0) return -1;
  m.step = tmp.v;
  if ((p = digits(b, p + SEP, n, tmp)) < 0) return -1;
  m.seq = tmp.v;
  if ((p = digits(b, p + SEP, n, tmp)) < 0) return -1;
  m.tUs = tmp.v;
  return p;
}
