// The two wire formats a client can speak: XML (everyone, from the start) and TAK Protocol v1
// (protobuf, after negotiation). Every event is encoded at most once per format: the protobuf bytes
// of an Envelope are made on its first protobuf recipient and shared by all the others.
import { encodeStreamMessage, MAX_STREAM_MESSAGE, TAK_MAGIC, Unconvertible } from '../protocol/takproto.ts';
import type { Envelope } from './bus/types.ts';

/** Sentinels for "cannot go out as protobuf": over ATAK's 64 KiB limit (or unreadable), and an
 *  event TAK Protocol cannot carry as it is (a <point> without numbers). Both are empty Buffers. */
export const TOO_BIG = Buffer.alloc(0);
export const UNCONVERTIBLE = Buffer.alloc(0);

function encode(xml: Buffer): Buffer {
  try {
    return encodeStreamMessage(xml) ?? TOO_BIG;
  } catch (err) {
    // the frame passed the scan, so anything but Unconvertible is not expected; never crash the delivery
    return err instanceof Unconvertible ? UNCONVERTIBLE : TOO_BIG;
  }
}

// The event being routed right now when it arrived as protobuf: its session, the XML it was
// decoded to and the TakMessage itself (valid only during that synchronous routing call).
let inSession = 0;
let inXml: Buffer | null = null;
let inMsg: Buffer | null = null;

/** Set by the session around the routing of an event that arrived as protobuf; (0, null, null) after. */
export function setInbound(session: number, xml: Buffer | null, msg: Buffer | null): void {
  inSession = session;
  inXml = xml;
  inMsg = msg;
}

/** The sender's own message, framed: used when the event goes out exactly as it came in (no
 *  <marti> stripped), which saves the encode and forwards what the client sent. */
function inboundAsIs(env: Envelope): Buffer | null {
  if (inMsg === null || env.session !== inSession || env.frame.length !== inXml!.length || !env.frame.equals(inXml!)) return null;
  const len = inMsg.length;
  let hs = 2;
  for (let v = len; v >= 0x80; v = Math.floor(v / 0x80)) hs++;
  if (hs + len > MAX_STREAM_MESSAGE) return null;
  const b = Buffer.allocUnsafe(hs + len);
  b[0] = TAK_MAGIC;
  let p = 1;
  let v = len;
  while (v >= 0x80) { b[p++] = (v & 0x7f) | 0x80; v >>>= 7; }
  b[p] = v;
  inMsg.copy(b, hs);
  return b;
}

/** The protobuf stream bytes of an envelope, or TOO_BIG / UNCONVERTIBLE (empty) when it cannot be sent as protobuf. */
export function envelopeProto(env: Envelope): Buffer {
  let p = env.proto;
  if (p === undefined) env.proto = p = inboundAsIs(env) ?? encode(env.frame);
  return p;
}

// Server-made frames (pong is one Buffer per second) are encoded once per Buffer, too.
const made = new WeakMap<Buffer, Buffer>();

/** The protobuf stream bytes of an XML frame that may be sent many times (cached per Buffer);
 *  TOO_BIG / UNCONVERTIBLE (empty) when it cannot be sent as protobuf. */
export function frameProto(xml: Buffer): Buffer {
  let p = made.get(xml);
  if (p === undefined) made.set(xml, p = encode(xml));
  return p;
}
