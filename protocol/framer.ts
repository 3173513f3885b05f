// Byte stream -> CoT frames. Incremental, linear in the bytes whatever the chunking, bounded memory.
//
// XML mode: a frame is `<event …>…</event>` (or a self-closing `<event …/>`), ended by the first
// `</event>` end tag outside comments, CDATA sections and processing instructions. Nesting depth
// is deliberately not tracked: a nested <event> makes a frame the scan rejects. One broken frame
// never swallows the stream: the bytes `</event>` inside a comment, CDATA or PI (where TAK clients
// cut their stream: the scan refuses them) and a '<' inside a quoted attribute value (XML allows
// none: the quotes are out of step) reject the frame there, and the framer resynchronises. (A
// frame complete in one chunk is read by the scan core instead, which refuses the same frames.)
//
// Byte accounting (every pushed byte ends up in exactly one counter, or in `buffered`):
//   framedBytes  - bytes of frames handed to sink.frame()
//   ignoredBytes - what legitimately sits between events: white space, <?xml …?> declarations and
//                  other processing instructions, <!-- comments -->
//   skippedBytes - everything else: junk between events and the bytes of rejected frames
//                  (oversize, DOCTYPE/ENTITY), up to the next `<event` where the framer resynchronises.
// The counters are already up to date when sink.frame() runs (the frame counted, nothing buffered):
// the session relies on that to find where a t-x-takp-q request ended in its chunk (the switch to
// TAK protobuf happens right there; test/e2e/takproto.test.ts "request and first protobuf message").
import { CR, DQ, GT, LF, LT, QM, SLASH, SP, SQ, TAB, DASH, RSQB, BANG, LSQB } from './chars.ts';
import { endChunk, joinedFrameAt, joinedHeader, nextCut, nextEnd, nextPos, nextFrameAt, primeScan, type CotHeader } from './scan.ts';
import { place, placeJoined, release, top } from './core.ts';
import { FrameBuffer } from './framebuffer.mjs';

export type FrameRejectReason = 'oversize' | 'malformed';
export interface FramerSink {
  /** one complete <event …>…</event> frame (a Buffer slice; valid only until the next push()
   *  returns — callers that keep it copy it) */
  frame(frame: Buffer): void;
  /** a frame was discarded: 'oversize' (over maxFrameBytes) or 'malformed' (e.g. <!DOCTYPE / <!ENTITY) */
  reject(reason: FrameRejectReason, detail: string): void;
}

export const DEFAULT_MAX_FRAME_BYTES = 1048576;

// Lexer states. OUT* and JUNK* are between frames; T_* are a tentative frame start; the rest are
// inside a frame. The framer resumes in any of them when the next chunk arrives.
const OUT = 0, OUT_PI = 1, OUT_COMMENT = 2, JUNK = 3;
const T_LT = 4, T_BANG = 5, T_BANG_DASH = 6, T_EVENT = 7; // after '<' seen between frames
const CONTENT = 10, LT_ = 11, TAG = 12, DQV = 13, SQV = 14, ETAG = 15, ETAG_WS = 16, BANG_ = 17,
  BANG_DASH = 18, CDATA_OPEN = 19, COMMENT = 20, CDATA = 21, PI = 22;
/** the start of a frame the chunk end cut, well-formed so far, kept in acc without lexing it: the
 *  next chunk first tries the core on the two joined (see the note after pushXml) */
const CUT = 23;
const FIRST_FRAME_STATE = T_LT;

const EVENT = [0x65, 0x76, 0x65, 0x6e, 0x74]; // "event"
const END_TAG = [LT, SLASH, 0x65, 0x76, 0x65, 0x6e, 0x74]; // "</event"
const CDATA_KW = [0x43, 0x44, 0x41, 0x54, 0x41, LSQB]; // "CDATA["
const KEEP_ACC_MAX = 65536; // a larger reassembly buffer is released after its frame

function ws(c: number): boolean {
  return c === SP || c === LF || c === TAB || c === CR;
}

function declDetail(c: number): string {
  if (c === 0x44 /* D */) return '<!DOCTYPE is not allowed';
  if (c === 0x45 /* E */) return '<!ENTITY is not allowed';
  return 'markup declaration <!… is not allowed';
}

const EMPTY = Buffer.alloc(0);

export class Framer {
  /** cumulative bytes of junk and rejected frames (see the accounting note at the top) */
  skippedBytes = 0;
  /** cumulative white space, declarations, PIs and comments between events */
  ignoredBytes = 0;
  /** cumulative bytes delivered in frames */
  framedBytes = 0;
  /** wire format of this framer; the TAK protobuf stream (0xBF varint-length frames) has its own
   *  framer with the same sink and counters (protoframer.ts, mode 'protobuf') */
  readonly mode: 'xml' = 'xml';

  private readonly sink: FramerSink;
  private readonly max: number;
  private st = OUT;
  /** match index / run counter of the current state (keyword position, dashes, brackets …) */
  private k = 0;
  /** bytes of the current (tentative) frame seen so far, in this and earlier chunks */
  private frameLen = 0;
  /** inside the root start tag (a `/>` there ends the frame) */
  private root = false;
  /** the previous byte in a tag was '/' */
  private slash = false;
  /** inside a comment, CDATA section or PI: bytes of "</event" matched so far */
  private m = 0;
  /** reassembly of a frame that spans chunks: the one copy */
  private acc: Buffer = EMPTY;
  private accLen = 0;
  /** lexing a cut frame's start again (the core could not finish it): do not keep it as CUT */
  private relex = false;

  constructor(sink: FramerSink, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 16) throw new RangeError(`maxFrameBytes must be an integer >= 16, got ${maxFrameBytes}`);
    this.sink = sink;
    this.max = maxFrameBytes;
  }

  /** bytes currently buffered waiting for the rest of a frame */
  get buffered(): number {
    return this.st >= FIRST_FRAME_STATE ? this.frameLen : 0;
  }

  /** Consumes a chunk. When the sink is called, the counters already cover every byte up to the
   *  end of that frame (the session relies on it to switch to protobuf right after a request). */
  push(chunk: Buffer): void {
    const saved = top;
    try {
      this.pushXml(chunk);
    } finally {
      release(saved); // the chunk's copy in the scan core
      endChunk(); // and the lazily read values of its frames become one string (scan.ts Batch)
    }
  }

  private pushXml(b: Buffer): void {
    const n = b.length;
    let p = 0;
    /** start of the current (tentative) frame in this chunk; -1: it began in an earlier chunk */
    let fs = -1;
    /** the chunk from `p` on is copied into the scan core once, the first time it is between
     *  frames; b[i] is then at core address base + i */
    let base = -1;
    /** the chunk's memory: fast-path frames are views of it made as FrameBuffer, half the cost of
     *  b.subarray() (no per-frame argument checks and getters; framebuffer.mjs) */
    const ab = b.buffer;
    const bo = b.byteOffset;
    if (this.st === CUT && n > 0) {
      const plen = this.accLen;
      const at = placeJoined(this.acc, plen, b);
      base = at + plen;
      const len = joinedFrameAt(at, base + n, this.max);
      if (len > plen) {
        // complete and well-formed now: acc gets the rest of it and is the frame
        p = len - plen;
        this.append(b, 0, p);
        const frame = this.acc.subarray(0, len);
        const h = joinedHeader(frame, at);
        this.framedBytes += len;
        this.frameLen = 0;
        this.accLen = 0;
        this.st = OUT;
        this.deliver(frame, h);
        if (this.acc.length > KEEP_ACC_MAX) this.acc = EMPTY;
      } else {
        // not (or not yet) a well-formed frame: the lexer reads it exactly from its start, once
        const start = Buffer.from(this.acc.subarray(0, plen));
        this.frameLen = 0;
        this.accLen = 0;
        this.st = OUT;
        this.relex = true;
        try {
          this.pushXml(start);
        } finally {
          this.relex = false;
        }
      }
    }

    while (p < n) {
      const st = this.st;
      // Inside a frame the lexer may only look at bytes up to the frame limit.
      let end = n;
      if (st >= FIRST_FRAME_STATE) {
        const room = this.max - this.frameLen;
        if (room <= 0) {
          this.discard(`frame exceeds ${this.max} bytes`, 'oversize');
          continue; // JUNK from p
        }
        if (p + room < n) end = p + room;
      }
      const before = p;
      switch (st) {
        case OUT: {
          // Fast path: the core skips white space and complete declarations and reads the event
          // there in the same pass that validates it (see the note after pushXml).
          if (base < 0) base = place(b, p, n) - p;
          const h = nextFrameAt(b, base, p, n, this.max);
          this.ignoredBytes += nextPos - p;
          p = nextPos;
          if (h !== undefined) {
            const e = nextEnd;
            this.framedBytes += e - p;
            this.deliver(new FrameBuffer(ab, bo + p, e - p), h);
            p = e;
            continue;
          }
          if (p >= n) continue;
          if (nextCut && n - p < this.max && !this.relex) {
            // an event well-formed up to the chunk end: kept as it is for the core to finish
            this.append(b, p, n);
            this.frameLen = n - p;
            this.st = CUT;
            p = n;
            continue;
          }
          if (b[p] !== LT) { this.st = JUNK; continue; }
          const c1 = p + 1 < n ? b[p + 1] : -1;
          if (c1 === 0x65 /* e */ && p + 6 < n && b[p + 2] === 0x76 && b[p + 3] === 0x65 && b[p + 4] === 0x6e &&
            b[p + 5] === 0x74 && (ws(b[p + 6]) || b[p + 6] === GT || b[p + 6] === SLASH)) {
            // not a complete well-formed event in this chunk: lex it exactly
            fs = p;
            p += 6;
            this.frameLen = 6;
            this.root = true;
            this.slash = false;
            this.st = TAG;
            continue;
          }
          // '<' of something else (a declaration the core found incomplete here, a comment, junk)
          fs = p++;
          this.frameLen = 1;
          this.k = 0;
          this.st = T_LT;
          continue;
        }
        case OUT_PI: { // until "?>"; k = previous byte was '?'
          let k = this.k;
          for (; p < n; p++) {
            const c = b[p];
            if (c === GT && k) { p++; this.st = OUT; break; }
            k = c === QM ? 1 : 0;
          }
          this.k = k;
          this.ignoredBytes += p - before;
          continue;
        }
        case OUT_COMMENT: { // until "-->"; k = dashes just seen
          let k = this.k;
          for (; p < n; p++) {
            const c = b[p];
            if (c === GT && k >= 2) { p++; this.st = OUT; break; }
            k = c === DASH ? k + 1 : 0;
          }
          this.k = k;
          this.ignoredBytes += p - before;
          continue;
        }
        case JUNK: {
          const q = b.indexOf(LT, p);
          if (q < 0) { this.skippedBytes += n - p; p = n; continue; }
          this.skippedBytes += q - p;
          fs = q;
          p = q + 1;
          this.frameLen = 1;
          this.k = -1; // junk origin: comments and PIs here are junk too
          this.st = T_LT;
          continue;
        }
        case T_LT: {
          const c = b[p];
          const fromJunk = this.k === -1;
          if (c === 0x65 /* e */) { p++; this.frameLen++; this.k = 1; this.st = T_EVENT; continue; }
          if (c === BANG) { p++; this.frameLen++; this.k = fromJunk ? -1 : 0; this.st = T_BANG; continue; }
          if (c === QM && !fromJunk) {
            p++;
            this.ignoredBytes += this.frameLen + 1;
            this.dropTentative();
            this.k = 0;
            this.st = OUT_PI;
            continue;
          }
          this.toJunk(); // reprocess c as junk (it may be the next '<')
          continue;
        }
        case T_BANG: {
          const c = b[p];
          if (c === DASH && this.k !== -1) { p++; this.frameLen++; this.st = T_BANG_DASH; continue; }
          // between events a declaration is rejected; inside junk it is just more junk
          if (this.k !== -1) { this.discard(declDetail(c), 'malformed'); continue; }
          this.toJunk();
          continue;
        }
        case T_BANG_DASH: {
          if (b[p] === DASH) {
            p++;
            this.ignoredBytes += this.frameLen + 1;
            this.dropTentative();
            this.k = 0;
            this.st = OUT_COMMENT;
          } else {
            this.toJunk();
          }
          continue;
        }
        case T_EVENT: {
          const c = b[p];
          const k = this.k;
          if (k < 5) {
            if (c === EVENT[k]) { p++; this.frameLen++; this.k = k + 1; } else this.toJunk();
            continue;
          }
          if (ws(c) || c === GT || c === SLASH) {
            // a frame starts; the delimiter is lexed by TAG
            this.root = true;
            this.slash = false;
            this.st = TAG;
          } else {
            this.toJunk();
          }
          continue;
        }
        case CONTENT: {
          let q = b.indexOf(LT, p);
          if (q < 0 || q >= end) q = -1;
          if (q < 0) { p = end; } else { p = q + 1; this.st = LT_; }
          this.frameLen += p - before;
          continue;
        }
        case LT_: {
          const c = b[p];
          if (c === SLASH) { p++; this.k = 0; this.st = ETAG; }
          else if (c === BANG) { p++; this.st = BANG_; }
          else if (c === QM) { p++; this.k = 0; this.st = PI; }
          else { this.slash = false; this.st = TAG; }
          this.frameLen += p - before;
          continue;
        }
        case TAG: {
          let slash = this.slash;
          let done = false;
          for (; p < end; p++) {
            const c = b[p];
            if (c === GT) {
              p++;
              if (this.root && slash) done = true;
              this.root = false;
              this.st = CONTENT;
              break;
            }
            if (c === DQ) { p++; this.st = DQV; break; }
            if (c === SQ) { p++; this.st = SQV; break; }
            slash = c === SLASH;
          }
          this.slash = false;
          if (p >= end && this.st === TAG) this.slash = slash;
          this.frameLen += p - before;
          if (done) fs = this.emit(b, fs, p);
          continue;
        }
        case DQV:
        case SQV: {
          // XML allows no '<' in an attribute value: one here means the quotes are out of step (a
          // quote inside a value, or a stray '<' in text that opened a "tag"). Taken as a value,
          // every later </event> would read as inside one and a megabyte of good events would go
          // with this frame; so the frame is rejected and the framer resynchronises at that '<'.
          const quote = st === DQV ? DQ : SQ;
          for (; p < end; p++) {
            const c = b[p];
            if (c === quote) { p++; this.st = TAG; break; }
            if (c === LT) break;
          }
          this.frameLen += p - before;
          if (this.st !== TAG && p < end) this.discard('"<" in an attribute value (an unescaped quote or "<" in the event)', 'malformed');
          continue;
        }
        case ETAG: {
          const c = b[p];
          const k = this.k;
          if (k < 5) {
            if (c === EVENT[k]) { p++; this.k = k + 1; } else { this.slash = false; this.st = TAG; }
          } else if (c === GT) {
            p++;
            this.frameLen += 1;
            fs = this.emit(b, fs, p);
            continue;
          } else if (ws(c)) {
            p++;
            this.st = ETAG_WS;
          } else {
            this.slash = false;
            this.st = TAG;
          }
          this.frameLen += p - before;
          continue;
        }
        case ETAG_WS: {
          while (p < end && ws(b[p])) p++;
          this.frameLen += p - before;
          if (p < end) {
            if (b[p] === GT) {
              p++;
              this.frameLen++;
              fs = this.emit(b, fs, p);
            } else {
              this.slash = false;
              this.st = TAG;
            }
          }
          continue;
        }
        case BANG_: {
          const c = b[p];
          if (c === DASH) { p++; this.st = BANG_DASH; }
          else if (c === LSQB) { p++; this.k = 0; this.st = CDATA_OPEN; }
          else { this.discard(declDetail(c), 'malformed'); continue; }
          this.frameLen += p - before;
          continue;
        }
        case BANG_DASH: {
          if (b[p] !== DASH) { this.discard('malformed comment', 'malformed'); continue; }
          p++;
          this.k = 0;
          this.st = COMMENT;
          this.frameLen += 1;
          continue;
        }
        case CDATA_OPEN: {
          if (b[p] !== CDATA_KW[this.k]) { this.discard('malformed CDATA section', 'malformed'); continue; }
          p++;
          this.frameLen += 1;
          if (++this.k === CDATA_KW.length) { this.k = 0; this.st = CDATA; }
          continue;
        }
        case COMMENT:
        case CDATA:
        case PI: {
          // until "-->", "]]>" or "?>": k counts the run of the terminator's repeated byte. And m
          // the bytes of "</event" just seen: the exact bytes "</event>" in there end the frame as
          // malformed (the scan refuses such a frame anyway: TAK clients cut their stream at them),
          // so an unclosed comment or CDATA costs only its own event
          const mark = st === COMMENT ? DASH : st === CDATA ? RSQB : QM;
          const need = st === PI ? 1 : 2;
          let k = this.k;
          let m = this.m;
          let hit = false;
          for (; p < end; p++) {
            const c = b[p];
            if (c === GT && k >= need) { p++; this.st = CONTENT; break; }
            k = c === mark ? k + 1 : 0;
            if (m === END_TAG.length) {
              if (c === GT) { hit = true; break; }
              m = 0;
            }
            m = c === END_TAG[m] ? m + 1 : c === LT ? 1 : 0;
          }
          this.k = k;
          this.m = this.st === st ? m : 0;
          this.frameLen += p - before;
          if (hit) { this.m = 0; this.discard(`</event> inside ${st === COMMENT ? 'a comment' : st === CDATA ? 'a CDATA section' : 'a processing instruction'}`, 'malformed'); }
          continue;
        }
        default:
          throw new Error(`framer: bad state ${st}`);
      }
    }
    // Keep the unfinished frame (or tentative '<event' prefix) for the next chunk.
    if (this.st >= FIRST_FRAME_STATE && this.st !== CUT) this.append(b, fs < 0 ? 0 : fs, n);
  }

  // The fast path (OUT above): a frame wholly inside this chunk is read by the scan core in the
  // same pass that validates it. If the core finds a well-formed <event> element, its end is the
  // frame end the exact lexer would find (a well-formed element holds "</event" only in comments,
  // CDATA or PIs, which both skip, and the scan refuses nested <event> elements), so the frame is
  // delivered with its scan result: one pass over the bytes. Otherwise (frame cut by the chunk end
  // or the size limit, or not well-formed: the scan stops at the first error) the frame is lexed
  // exactly from its start, at most one extra pass over it.
  //
  // A frame the chunk end cuts (one per chunk of a steady stream) would cost the lexer's walk over
  // both its parts and a second scan. When the core reports it well-formed up to the chunk end
  // (its reason is one that only the end of the bytes gives: unclosed, unterminated tag or value,
  // so the lexer would not find its end before the chunk end either), its bytes are kept as they
  // are (CUT) and the next push() places them and the new chunk contiguously in the core and tries
  // once more from the frame start: complete and well-formed, it is delivered with its header;
  // otherwise the lexer reads the kept start exactly (relex) and goes on into the chunk as if it
  // had never stopped. Each frame gets at most this one retry, so time stays linear.

  private deliver(frame: Buffer, r: CotHeader | undefined): void {
    primeScan(frame, r);
    try {
      this.sink.frame(frame);
    } finally {
      primeScan(undefined, undefined);
    }
  }

  /** Hands a complete frame ending at `e` in chunk `b` to the sink. Returns the new `fs` (-1). */
  private emit(b: Buffer, fs: number, e: number): number {
    let frame: Buffer;
    if (fs >= 0) {
      frame = b.subarray(fs, e);
    } else {
      this.append(b, 0, e);
      frame = this.acc.subarray(0, this.accLen);
    }
    this.framedBytes += this.frameLen;
    this.frameLen = 0;
    this.accLen = 0;
    this.st = OUT;
    this.deliver(frame, undefined);
    if (this.acc.length > KEEP_ACC_MAX) this.acc = EMPTY;
    return -1;
  }

  /** Rejects the current frame; the framer resynchronises at the next `<event`. */
  private discard(detail: string, reason: FrameRejectReason): void {
    this.skippedBytes += this.frameLen;
    this.dropTentative();
    this.st = JUNK;
    this.sink.reject(reason, detail);
  }

  /** The tentative '<…' turned out not to start an event: it is junk; the current byte is re-lexed. */
  private toJunk(): void {
    this.skippedBytes += this.frameLen;
    this.dropTentative();
    this.st = JUNK;
  }

  private dropTentative(): void {
    this.frameLen = 0;
    this.accLen = 0;
    if (this.acc.length > KEEP_ACC_MAX) this.acc = EMPTY;
  }

  private append(b: Buffer, s: number, e: number): void {
    const len = e - s;
    if (len <= 0) return;
    const need = this.accLen + len;
    if (need > this.acc.length) {
      let cap = Math.max(4096, this.acc.length * 2);
      while (cap < need) cap *= 2;
      const next = Buffer.allocUnsafe(Math.min(cap, Math.max(need, this.max)));
      this.acc.copy(next, 0, 0, this.accLen);
      this.acc = next;
    }
    b.copy(this.acc, this.accLen, s, e);
    this.accLen = need;
  }
}
