// Byte stream -> CoT frames for a stream that negotiated TAK Protocol v1: each message is 0xBF, an
// unsigned varint length, then one TakMessage. Same sink as the XML Framer; each message is decoded
// here to the XML frame the rest of the server works on (the router and the bus speak XML).
//
// Bad input, and what it costs (the framing decides, not guesswork):
//   - a length over maxFrameBytes: the framing is intact, so the declared bytes are skipped
//     (reject 'oversize') and the next message is read; over 16 times maxFrameBytes (and 64 MiB)
//     it is not a length at all (lost framing, below);
//   - an undecodable TakMessage: dropped (reject 'malformed'), the next message is read;
//   - no 0xBF where a message must start, a length varint over 10 bytes, or an absurd length: the framing is lost
//     and 0xBF may occur anywhere in a payload, so there is no reliable resynchronisation: reject
//     'malformed' and set `fatal`; the framer ignores everything after it and the session closes.
//     Only before the first message, XML white space is skipped: it ends the client's XML request.
// Byte accounting as in the XML framer: framedBytes (whole messages that produced a frame),
// ignoredBytes (messages without a CotEvent), skippedBytes (everything else), plus `buffered`.
import type { FramerSink } from './framer.ts';
import { decodeTakMessage, decodedPointFinite, TAK_MAGIC, TakProtoError } from './takproto.ts';

const MAGIC = 0, LENGTH = 1, BODY = 2, SKIP = 3, DEAD = 4;
const KEEP_ACC_MAX = 65536;
/** a declared length over this many times maxFrameBytes, and over LOST_FLOOR, is lost framing, not
 *  an oversize message (the floor: with a small --max-frame-bytes a large route is still a message) */
const LOST_FACTOR = 16;
const LOST_FLOOR = 64 * 1024 * 1024;
const EMPTY = Buffer.alloc(0);

export class ProtoFramer {
  readonly mode = 'protobuf' as const;
  skippedBytes = 0;
  ignoredBytes = 0;
  framedBytes = 0;
  /** why the stream cannot be read any further, or null */
  fatal: string | null = null;
  /** during sink.frame(): the TakMessage that frame was decoded from (valid only during the call) */
  current: Buffer | null = null;
  /** during sink.frame(): `current` may go out to protobuf clients as it came (its point is all
   *  finite numbers, so the frame would encode to protobuf at all) */
  currentAsIs = false;

  private readonly sink: FramerSink;
  private readonly max: number;
  private st = MAGIC;
  /** declared length of the current message, while reading it */
  private len = 0;
  /** varint: bytes read and multiplier */
  private lenBytes = 0;
  private mul = 1;
  /** header bytes of the current message (1 + varint), for the byte accounting */
  private head = 0;
  /** bytes still to skip (SKIP) */
  private left = 0;
  private acc: Buffer = EMPTY;
  private accLen = 0;
  /** before the first message: XML white space is tolerated */
  private first = true;

  constructor(sink: FramerSink, maxFrameBytes: number) {
    this.sink = sink;
    this.max = maxFrameBytes;
  }

  get buffered(): number {
    return this.st === DEAD || this.st === SKIP ? 0 : this.st === MAGIC ? 0 : this.head + this.accLen;
  }

  push(b: Buffer): void {
    const n = b.length;
    let p = 0;
    while (p < n) {
      switch (this.st) {
        case MAGIC:
          if (this.first && (b[p] === 0x20 || b[p] === 0x0a || b[p] === 0x0d || b[p] === 0x09)) {
            // white space the client put after its XML request (…</event>\n) is still XML
            p++;
            this.ignoredBytes++;
            continue;
          }
          this.first = false;
          if (b[p] !== TAK_MAGIC) {
            this.die(`expected the 0xBF magic byte, got 0x${b[p].toString(16).padStart(2, '0')}`);
            this.skippedBytes += n - p;
            return;
          }
          p++;
          this.head = 1;
          this.len = 0;
          this.lenBytes = 0;
          this.mul = 1;
          this.st = LENGTH;
          continue;
        case LENGTH: {
          const c = b[p++];
          this.head++;
          this.len += (c & 0x7f) * this.mul;
          this.mul *= 0x80;
          if (c >= 0x80) {
            if (++this.lenBytes === 10) { this.skippedBytes += this.head; this.die('message length varint longer than 10 bytes'); this.skippedBytes += n - p; return; }
            continue;
          }
          if (this.len > Math.max(this.max * LOST_FACTOR, LOST_FLOOR)) {
            // no client sends that: the bytes are not TAK framing (skipping them would drop all
            // the client sends from now on, silently, while it stays connected)
            this.skippedBytes += this.head;
            this.die(`message length ${this.len} is not a TAK message length: framing lost`);
            this.skippedBytes += n - p;
            return;
          }
          if (this.len > this.max) {
            this.skippedBytes += this.head;
            this.left = this.len;
            this.st = SKIP;
            this.sink.reject('oversize', `TAK message of ${this.len} bytes exceeds ${this.max}`);
            continue;
          }
          this.accLen = 0;
          this.st = BODY;
          if (this.len === 0) this.message(EMPTY);
          continue;
        }
        case BODY: {
          const need = this.len - this.accLen;
          if (this.accLen === 0 && n - p >= need) {
            // the whole message is in this chunk: no copy
            const msg = b.subarray(p, p + need);
            p += need;
            this.message(msg);
            continue;
          }
          const take = Math.min(need, n - p);
          this.append(b, p, p + take);
          p += take;
          if (this.accLen === this.len) this.message(this.acc.subarray(0, this.accLen));
          continue;
        }
        case SKIP: {
          const take = Math.min(this.left, n - p);
          p += take;
          this.left -= take;
          this.skippedBytes += take;
          if (this.left === 0) this.st = MAGIC;
          continue;
        }
        default: // DEAD
          this.skippedBytes += n - p;
          return;
      }
    }
  }

  /** One complete TakMessage: decode to XML and hand it on. */
  private message(msg: Buffer): void {
    const bytes = this.head + msg.length;
    this.st = MAGIC;
    this.accLen = 0;
    let xml: Buffer | null;
    try {
      xml = decodeTakMessage(msg);
    } catch (e) {
      this.skippedBytes += bytes;
      if (this.acc.length > KEEP_ACC_MAX) this.acc = EMPTY;
      this.sink.reject('malformed', e instanceof TakProtoError ? `undecodable TAK message: ${e.message}` : String(e));
      return;
    }
    if (this.acc.length > KEEP_ACC_MAX) this.acc = EMPTY;
    if (xml === null) { this.ignoredBytes += bytes; return; }
    this.framedBytes += bytes;
    this.current = msg;
    this.currentAsIs = decodedPointFinite();
    this.sink.frame(xml);
    this.current = null;
  }

  private die(detail: string): void {
    this.st = DEAD;
    this.fatal = detail;
    this.acc = EMPTY;
    this.accLen = 0;
    this.sink.reject('malformed', detail);
  }

  private append(b: Buffer, s: number, e: number): void {
    const need = this.accLen + (e - s);
    if (need > this.acc.length) {
      // grow with the bytes that actually arrive, not with the declared length
      let cap = Math.max(4096, this.acc.length * 2);
      while (cap < need) cap *= 2;
      const next = Buffer.allocUnsafe(Math.min(cap, this.len));
      this.acc.copy(next, 0, 0, this.accLen);
      this.acc = next;
    }
    b.copy(this.acc, this.accLen, s, e);
    this.accLen = need;
  }
}
