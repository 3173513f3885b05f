// Builders for the events the server itself sends: pong, disconnect notice, TAK protocol
// announcement and response. Constant parts are encoded once; only the timestamps vary.
import { randomUUID } from 'node:crypto';
import { escapeAttr } from './xml.ts';

export const SERVER_VERSION = 'cotstream-0.1.0';

/** CoT time format: ISO 8601 UTC with milliseconds. */
export function cotTime(ms: number): string {
  return new Date(ms).toISOString();
}

// A point that says "no position": node-tak drops events without a <point>.
const NO_POINT = '<point lat="0.0" lon="0.0" hae="0.0" ce="9999999.0" le="9999999.0"/>';

function times(now: number, staleSec: number): string {
  const t = cotTime(now);
  return `time="${t}" start="${t}" stale="${cotTime(now + staleSec * 1000)}"`;
}

// Pongs are cached for the current millisecond-second: under a ping storm the same bytes are reused.
let pongSecond = -1;
let pongCache: Buffer = Buffer.alloc(0);

/** The answer to a t-x-c-t ping (TAK Server's template: uid takPong, how h-g-i-g-o, stale +20 s). */
export function pong(now = Date.now()): Buffer {
  const sec = Math.floor(now / 1000);
  if (sec !== pongSecond) {
    pongSecond = sec;
    pongCache = Buffer.from(`<event version="2.0" uid="takPong" type="t-x-c-t-r" how="h-g-i-g-o" ${times(sec * 1000, 20)}>${NO_POINT}<detail/></event>`);
  }
  return pongCache;
}

/**
 * Sent to everyone when an identified client disconnects. ATAK ignores a delete whose link lacks
 * `type`, so it carries the client's last SA type; no __forcedelete (the contact goes stale, not away).
 */
export function disconnectNotice(uid: string, type: string, now = Date.now()): Buffer {
  return Buffer.from(
    `<event version="2.0" uid="${randomUUID()}" type="t-x-d-d" how="h-g-i-g-o" ${times(now, 20)}>${NO_POINT}` +
      `<detail><link uid="${escapeAttr(uid)}" relation="p-p" type="${escapeAttr(type || 'a-f-G')}"/></detail></event>`,
  );
}

/** TAK Protocol announcement sent once after the handshake (and after the latest-SA replay). */
export function protocolSupport(now = Date.now()): Buffer {
  return Buffer.from(
    `<event version="2.0" uid="${randomUUID()}" type="t-x-takp-v" how="m-g" ${times(now, 60)}>` +
      '<point lat="0.0" lon="0.0" hae="0.0" ce="999999" le="999999"/>' +
      `<detail><TakControl><TakProtocolSupport version="1"/><TakServerVersionInfo serverVersion="${SERVER_VERSION}" apiVersion="3"/></TakControl></detail></event>`,
  );
}

/** Answer to a t-x-takp-q request (same uid as the request). */
export function protocolResponse(uid: string, ok: boolean, now = Date.now()): Buffer {
  return Buffer.from(
    `<event version="2.0" uid="${escapeAttr(uid)}" type="t-x-takp-r" how="m-g" ${times(now, 60)}>` +
      '<point lat="0.0" lon="0.0" hae="0.0" ce="999999" le="999999"/>' +
      `<detail><TakControl><TakResponse status="${ok ? 'true' : 'false'}"/></TakControl></detail></event>`,
  );
}
