// The two wire formats a client can speak: XML (everyone, from the start) and TAK Protocol v1
// (protobuf, after negotiation). Every event is encoded at most once per format: the protobuf bytes
// of an Envelope are made on its first protobuf recipient and shared by all the others.
import { encodeStreamMessage } from '../protocol/takproto.ts';
import type { Envelope } from './bus/types.ts';

/** Sentinel for "cannot go out as protobuf" (over ATAK's 64 KiB limit, or unreadable). */
const NONE = Buffer.alloc(0);

function encode(xml: Buffer): Buffer {
  try {
    return encodeStreamMessage(xml) ?? NONE;
  } catch {
    return NONE; // the frame passed the scan, so this is not expected; never crash the delivery
  }
}

/** The protobuf stream bytes of an envelope, or null when it cannot be sent as protobuf. */
export function envelopeProto(env: Envelope): Buffer | null {
  let p = env.proto;
  if (p === undefined) env.proto = p = encode(env.frame);
  return p === NONE ? null : p;
}

// Server-made frames (pong is one Buffer per second) are encoded once per Buffer, too.
const made = new WeakMap<Buffer, Buffer>();

/** The protobuf stream bytes of an XML frame that may be sent many times (cached per Buffer). */
export function frameProto(xml: Buffer): Buffer | null {
  let p = made.get(xml);
  if (p === undefined) made.set(xml, p = encode(xml));
  return p === NONE ? null : p;
}
