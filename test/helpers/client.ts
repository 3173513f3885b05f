// A minimal CoT test client over real mutual TLS. It cuts frames with indexOf('</event>') — on
// purpose independent of the server's framer — and lets tests wait for frames by predicate.
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

export interface ClientCreds { cert: string; key: string; ca: string }

/** Frames received so far, and waiting for more (or for the close) without polling. */
export class FrameWaiter {
  readonly frames: string[] = [];
  closed = false;
  protected waiters: Array<() => void> = [];

  protected wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async waitFor(pred: (frames: string[]) => boolean, ms = 5000, what = 'frames'): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this.frames)) {
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.frames.length} frames: ${this.frames.slice(-3).join('\n')}`);
      await new Promise<void>((r) => { const t = setTimeout(r, left); this.waiters.push(() => { clearTimeout(t); r(); }); });
    }
  }

  async waitClosed(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the server to close the connection');
      await new Promise<void>((r) => { const t = setTimeout(r, left); this.waiters.push(() => { clearTimeout(t); r(); }); });
    }
  }
}

export class CotClient extends FrameWaiter {
  private buf = '';
  error: Error | null = null;
  bytes = 0;

  private constructor(readonly sock: tls.TLSSocket) {
    super();
    sock.on('data', (d: Buffer) => {
      this.bytes += d.length;
      this.buf += d.toString('utf8');
      let i: number;
      while ((i = this.buf.indexOf('</event>')) >= 0) {
        const start = this.buf.indexOf('<event');
        this.frames.push(this.buf.slice(start, i + 8));
        this.buf = this.buf.slice(i + 8);
      }
      this.wake();
    });
    sock.on('close', () => { this.closed = true; this.wake(); });
    sock.on('error', (e) => { this.error = e; });
  }

  static connect(port: number, creds: Partial<ClientCreds> & { ca: string }, host = '127.0.0.1', localAddress?: string): Promise<CotClient> {
    return new Promise((resolve, reject) => {
      const sock = tls.connect({
        host, port, servername: 'localhost',
        // passed through to net.connect (the TLS option type does not list it)
        ...(localAddress ? { localAddress } : {}),
        ca: readFileSync(creds.ca),
        cert: creds.cert ? readFileSync(creds.cert) : undefined,
        key: creds.key ? readFileSync(creds.key) : undefined,
      });
      const c = new CotClient(sock);
      sock.once('secureConnect', () => resolve(c));
      sock.once('error', reject);
    });
  }

  /** Frames other than the server's protocol announcement. */
  cot(): string[] {
    return this.frames.filter((f) => !f.includes('type="t-x-takp-v"'));
  }

  send(xml: string | Buffer): void {
    this.sock.write(xml);
  }

  close(): void {
    this.sock.destroy();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `pred` every 50 ms until it holds; throws naming `what` after `ms`. */
export async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** An SA (self position report) the way ATAK sends it: declaration, contact endpoint, __group. */
export function sa(uid: string, callsign: string, opts: {
  staleSec?: number; lat?: number; type?: string;
  /** the sending device's clock is this far ahead (negative: behind) of the real time */
  skewSec?: number;
  /** how the device writes its times (default: toISOString, as ATAK) */
  fmt?: (ms: number) => string;
} = {}): string {
  const now = Date.now() + (opts.skewSec ?? 0) * 1000;
  const fmt = opts.fmt ?? ((ms: number) => new Date(ms).toISOString());
  const t = fmt(now);
  const stale = fmt(now + (opts.staleSec ?? 120) * 1000);
  return `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><event version="2.0" uid="${uid}" type="${opts.type ?? 'a-f-G-U-C'}" time="${t}" start="${t}" stale="${stale}" how="m-g">` +
    `<point lat="${opts.lat ?? 38.5}" lon="-77.1" hae="10.0" ce="9.9" le="9999999.0"/>` +
    `<detail><contact endpoint="*:-1:stcp" callsign="${callsign}"/><__group name="Cyan" role="Team Member"/><takv device="test" platform="ATAK-CIV" os="34" version="4.10"/></detail></event>`;
}

/** A GeoChat-like event, optionally directed with <marti><dest …/></marti>. */
export function chat(uid: string, text: string, dests: Array<{ callsign?: string; uid?: string }> | null = null, emptyMarti = false): string {
  const t = new Date().toISOString();
  const stale = new Date(Date.now() + 86400000).toISOString();
  let marti = '';
  if (emptyMarti) marti = '<marti/>';
  else if (dests) marti = '<marti>' + dests.map((d) => (d.callsign !== undefined ? `<dest callsign="${d.callsign}"/>` : `<dest uid="${d.uid}"/>`)).join('') + '</marti>';
  return `<event version="2.0" uid="GeoChat.${uid}.${Math.random().toString(36).slice(2)}" type="b-t-f" time="${t}" start="${t}" stale="${stale}" how="h-g-i-g-o">` +
    `<point lat="0.0" lon="0.0" hae="9999999.0" ce="9999999.0" le="9999999.0"/>` +
    `<detail><__chat senderCallsign="x" chatroom="y"/><remarks source="BAO.F.ATAK.${uid}">${text}</remarks>${marti}</detail></event>`;
}

export function ping(uid = 'pinger-ping'): string {
  const t = new Date().toISOString();
  const stale = new Date(Date.now() + 10000).toISOString();
  return `<?xml version="1.0"?>\n<event version="2.0" uid="${uid}" type="t-x-c-t" time="${t}" start="${t}" stale="${stale}" how="m-g"><point lat="0.00000000" lon="0.00000000" hae="0.00000000" ce="999999" le="999999"/><detail/></event>`;
}
