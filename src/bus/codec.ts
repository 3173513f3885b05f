// The wire form of the Redis bus: one PUBLISH carries one batch (every envelope a node published
// during one tick). Compact and fixed-layout, little-endian; strings are UTF-8 with a length prefix.
// The node id appears once per batch, not once per envelope.
//
// batch    = u8 version · u8 type · u8 nodeLen · node · u32 epoch · u32 batchSeq · u32 count · envelope*
// envelope = u8 kind · u8 flags · u32 session · f64 seq · f64 staleMs · str16 uid · str16 type ·
//            [u16 n · str16*n callsigns]  (flags & 1) · [u16 n · str16*n uids]  (flags & 2) ·
//            [str16 owner]  (flags & 4) · u32 frameLen · frame
// Version 2 added the owner (the certificate serial behind an SA's uid); version 1 batches (no
// owner) are still read, so a node of this version understands older ones, not the reverse.
// str16    = u16 len · bytes
//
// The decoder checks every length against the buffer: a corrupt or foreign message throws a
// CodecError (the bus counts and logs it), it never reads past the end or allocates from a lie.
import { EnvelopeKind, type Envelope } from './types.ts';

export const CODEC_VERSION = 2;

export const BatchType = {
  /** envelopes to deliver */
  events: 0,
  /** a node (re)joined and asks every node for the SAs of its own clients */
  sync: 1,
  /** liveness only: a node silent for a few heartbeats is gone */
  heartbeat: 2,
  /** the cluster's signed revocation list in Redis changed: fetch it (crl-share.ts) */
  crl: 3,
} as const;
export type BatchType = (typeof BatchType)[keyof typeof BatchType];

export interface BatchHeader {
  type: BatchType;
  node: string;
  /** random per process start: a restarted node (same id) starts a new sequence */
  epoch: number;
  /** per-node, per-epoch sequence of batches: duplicates are dropped, gaps counted */
  seq: number;
}

export interface Batch extends BatchHeader {
  envelopes: Envelope[];
}

export class CodecError extends Error {}

const F_CALLSIGNS = 1;
const F_UIDS = 2;
const F_OWNER = 4;
const MAX_KIND = EnvelopeKind.replay;

const MAX16 = 0xffff;

/** Bytes of a str16; NaN when the string cannot be encoded (poisons the sum). */
function strSize(s: string): number {
  const n = Buffer.byteLength(s);
  return n > MAX16 ? NaN : 2 + n;
}

function strListSize(list: string[] | null): number {
  if (list === null) return 0;
  let n = list.length > MAX16 ? NaN : 2;
  for (let i = 0; i < list.length; i++) n += strSize(list[i]);
  return n;
}

function writeStr(buf: Buffer, off: number, s: string): number {
  const n = buf.write(s, off + 2, 'utf8');
  buf.writeUInt16LE(n, off);
  return off + 2 + n;
}

function writeStrList(buf: Buffer, off: number, list: string[]): number {
  buf.writeUInt16LE(list.length, off);
  off += 2;
  for (let i = 0; i < list.length; i++) off = writeStr(buf, off, list[i]);
  return off;
}

/** Bytes of the batch header for this node id. */
export function headerSize(nodeBytes: number): number {
  return 3 + nodeBytes + 12;
}

/**
 * Bytes one envelope takes in a batch; NaN when it cannot be encoded (a string over 64 KiB or
 * more than 65535 dests: only a hostile client sends those, and the bus discards them).
 */
export function envelopeSize(env: Envelope): number {
  return 2 + 4 + 8 + 8 + strSize(env.uid) + strSize(env.type) +
    strListSize(env.callsigns) + strListSize(env.uids) + (env.owner ? strSize(env.owner) : 0) + 4 + env.frame.length;
}

/**
 * One batch in one new Buffer. `sizes` (optional) are the precomputed envelopeSize() values, so a
 * caller that already summed them for a size limit does not measure twice.
 */
export function encodeBatch(h: BatchHeader, envs: readonly Envelope[], sizes?: readonly number[]): Buffer {
  const nodeBytes = Buffer.byteLength(h.node);
  if (nodeBytes > 255) throw new CodecError('node id longer than 255 bytes');
  let total = headerSize(nodeBytes);
  for (let i = 0; i < envs.length; i++) total += sizes ? sizes[i] : envelopeSize(envs[i]);
  if (Number.isNaN(total)) throw new CodecError('an envelope has a string over 64 KiB or over 65535 dests');
  const buf = Buffer.allocUnsafe(total);
  buf[0] = CODEC_VERSION;
  buf[1] = h.type;
  buf[2] = nodeBytes;
  let off = 3 + buf.write(h.node, 3, 'utf8');
  buf.writeUInt32LE(h.epoch >>> 0, off);
  buf.writeUInt32LE(h.seq >>> 0, off + 4);
  buf.writeUInt32LE(envs.length, off + 8);
  off += 12;
  for (let i = 0; i < envs.length; i++) {
    const e = envs[i];
    buf[off] = e.kind;
    buf[off + 1] = (e.callsigns !== null ? F_CALLSIGNS : 0) | (e.uids !== null ? F_UIDS : 0) | (e.owner ? F_OWNER : 0);
    buf.writeUInt32LE(e.session >>> 0, off + 2);
    buf.writeDoubleLE(e.seq, off + 6);
    buf.writeDoubleLE(e.staleMs, off + 14);
    off = writeStr(buf, off + 22, e.uid);
    off = writeStr(buf, off, e.type);
    if (e.callsigns !== null) off = writeStrList(buf, off, e.callsigns);
    if (e.uids !== null) off = writeStrList(buf, off, e.uids);
    if (e.owner) off = writeStr(buf, off, e.owner);
    buf.writeUInt32LE(e.frame.length, off);
    off += 4;
    off += e.frame.copy(buf, off);
  }
  if (off !== total) throw new CodecError(`encoder size mismatch: ${off} != ${total}`);
  return buf;
}

/** Reads a batch header without decoding the envelopes (own echoes are skipped on this alone). */
export function decodeHeader(buf: Buffer): BatchHeader & { bodyOffset: number; count: number } {
  if (buf.length < 3) throw new CodecError('truncated header');
  if (buf[0] !== CODEC_VERSION && buf[0] !== 1) throw new CodecError(`unknown codec version ${buf[0]}`);
  const type = buf[1];
  if (type > BatchType.crl) throw new CodecError(`unknown batch type ${type}`);
  const nodeBytes = buf[2];
  const off = 3 + nodeBytes;
  if (buf.length < off + 12) throw new CodecError('truncated header');
  return {
    type: type as BatchType,
    node: buf.toString('utf8', 3, off),
    epoch: buf.readUInt32LE(off),
    seq: buf.readUInt32LE(off + 4),
    count: buf.readUInt32LE(off + 8),
    bodyOffset: off + 12,
  };
}

/**
 * Marks are events batches of no envelope (never sent otherwise), told apart by one byte after the
 * header. A node's answer to a sync request is framed by two: `start` (byte 1) and `end` (no byte);
 * a receiver that saw both, and no gap between them, has the node's complete state. `leaving`
 * (byte 2) is a node's last batch when it stops cleanly. Nodes before a mark ignore it: one before
 * `leaving` reads it as an `end` without a `start`, which proves nothing to it.
 */
export type Mark = 'start' | 'end' | 'leaving';
const MARK_BYTE = { start: 1, leaving: 2 } as const;

export function encodeMark(h: BatchHeader, mark: Mark): Buffer {
  const head = encodeBatch(h, []);
  return mark === 'end' ? head : Buffer.concat([head, Buffer.from([MARK_BYTE[mark]])]);
}

/** The mark a header-only events batch is (null: any other batch). */
export function markOf(buf: Buffer, h: ReturnType<typeof decodeHeader>): Mark | null {
  if (h.type !== BatchType.events || h.count !== 0) return null;
  const b = buf.length > h.bodyOffset ? buf[h.bodyOffset] : 0;
  return b === MARK_BYTE.start ? 'start' : b === MARK_BYTE.leaving ? 'leaving' : 'end';
}

/** A cursor over one batch: every read is bounds-checked. */
class Reader {
  constructor(readonly buf: Buffer, public off: number) {}
  need(n: number): void {
    if (this.off + n > this.buf.length) throw new CodecError(`truncated envelope at byte ${this.off}`);
  }
  u8(): number { this.need(1); return this.buf[this.off++]; }
  u16(): number { this.need(2); const v = this.buf.readUInt16LE(this.off); this.off += 2; return v; }
  u32(): number { this.need(4); const v = this.buf.readUInt32LE(this.off); this.off += 4; return v; }
  f64(): number { this.need(8); const v = this.buf.readDoubleLE(this.off); this.off += 8; return v; }
  str(): string {
    const n = this.u16();
    this.need(n);
    const s = this.buf.toString('utf8', this.off, this.off + n);
    this.off += n;
    return s;
  }
  strList(): string[] {
    const n = this.u16();
    // each entry takes at least its 2-byte length: a count the buffer cannot hold is a lie
    this.need(n * 2);
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = this.str();
    return out;
  }
}

/**
 * Decodes a whole batch. Frames are views into `buf` (no copy): a receiver that keeps one beyond
 * the current tick must copy it, or it pins the whole batch in memory.
 */
export function decodeBatch(buf: Buffer, t0 = 0): Batch {
  const h = decodeHeader(buf);
  const r = new Reader(buf, h.bodyOffset);
  // the smallest envelope is 30 bytes: bound the count before allocating for it
  if (h.count > (buf.length - h.bodyOffset) / 30) throw new CodecError(`envelope count ${h.count} exceeds the batch size`);
  const envelopes = new Array<Envelope>(h.count);
  for (let i = 0; i < h.count; i++) {
    const kind = r.u8();
    if (kind > MAX_KIND) throw new CodecError(`unknown envelope kind ${kind}`);
    const flags = r.u8();
    const session = r.u32();
    const seq = r.f64();
    const staleMs = r.f64();
    const uid = r.str();
    const type = r.str();
    const callsigns = flags & F_CALLSIGNS ? r.strList() : null;
    const uids = flags & F_UIDS ? r.strList() : null;
    const owner = flags & F_OWNER ? r.str() : undefined;
    const len = r.u32();
    r.need(len);
    const frame = buf.subarray(r.off, r.off + len);
    r.off += len;
    envelopes[i] = { kind: kind as EnvelopeKind, node: h.node, session, seq, uid, type, staleMs, callsigns, uids, frame, t0, owner };
  }
  if (r.off !== buf.length) throw new CodecError(`${buf.length - r.off} trailing bytes after the last envelope`);
  return { type: h.type, node: h.node, epoch: h.epoch, seq: h.seq, envelopes };
}
