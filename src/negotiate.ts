// TAK Protocol negotiation on a streaming connection (ATAK takproto/README, "Streaming Connection
// Protocol Negotiation"). The server announced t-x-takp-v (TakProtocolSupport version 1) after the
// SA replay; a client that wants protobuf answers t-x-takp-q with <TakRequest version="…"/> and
// waits. We answer t-x-takp-r in XML: status true for version 1, and from that moment both
// directions are protobuf; any other version gets status false and the client stays on XML.
// The spec asks a server to listen for the request for at least 60 s; we accept it for as long as
// the connection is on XML (a client that never asks simply stays on XML).
import { protocolResponse } from '../protocol/control.ts';
import type { CotHeader } from '../protocol/scan.ts';
import type { Session } from './session.ts';

export const TAK_PROTOCOL_VERSION = '1';

const TAK_REQUEST = Buffer.from('<TakRequest');

/** The version attribute of <TakRequest>, or undefined. Control frames are rare: no hot path. */
export function requestedVersion(frame: Buffer): string | undefined {
  const i = frame.indexOf(TAK_REQUEST);
  if (i < 0) return undefined;
  const end = frame.indexOf(0x3e /* > */, i);
  const tag = frame.toString('utf8', i + TAK_REQUEST.length, end < 0 ? frame.length : end);
  const m = /(?:^|\s)version\s*=\s*(?:"([^"]*)"|'([^']*)')/.exec(tag);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** A t-x-takp-q from `s`. `announced`: the server offered the protocol (it may be turned off). */
export function onProtocolRequest(s: Session, frame: Buffer, h: CotHeader, announced: boolean): void {
  const version = requestedVersion(frame);
  const ok = announced && version === TAK_PROTOCOL_VERSION;
  if (s.protobuf) {
    // already switched (a repeated request): answer in the format in force, change nothing
    s.sendCot(protocolResponse(h.uid, ok));
    return;
  }
  s.send(protocolResponse(h.uid, ok));
  if (ok) s.useProtobuf();
  // a switch happens once; a refusal is logged the first time only (a client repeating it would
  // write a line per request), with the version as asked, clipped (it is the client's text)
  if (!ok && s.protocolRefusals++ > 0) return;
  const requested = version === undefined ? null : version.length > 32 ? `${version.slice(0, 32)}…` : version;
  s.log.info({ audit: 'protocol', requested, accepted: ok, format: ok ? 'protobuf' : 'xml' },
    ok ? 'client switched to TAK protocol v1 (protobuf)' : 'client asked for an unsupported TAK protocol version: stays on XML (further refusals are not logged)');
}
