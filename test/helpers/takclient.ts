// A test client that can negotiate TAK Protocol v1 the way ATAK does. Independent of the server's
// codec: it sends protobuf made by @tak-ps/node-cot's to_proto and reads protobuf with protobufjs
// and the upstream .proto files (helpers/pbjs.ts). Every received event is kept as XML text.
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import CoT from '@tak-ps/node-cot';
import { pbjsToXml, streamFrame } from './pbjs.ts';
import { FrameWaiter, type ClientCreds } from './client.ts';

const END = Buffer.from('</event>');

export class TakClient extends FrameWaiter {
  /** raw protobuf messages received (bare TakMessage bytes) */
  readonly messages: Buffer[] = [];
  mode: 'xml' | 'protobuf' = 'xml';
  bytes = 0;
  /** set when we sent a t-x-takp-q and wait for the answer */
  private asked = false;
  private buf: Buffer = Buffer.alloc(0);

  private constructor(readonly sock: tls.TLSSocket) {
    super();
    sock.on('data', (d: Buffer) => {
      this.bytes += d.length;
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
      this.wake();
    });
    sock.on('close', () => { this.closed = true; this.wake(); });
    sock.on('error', () => {});
  }

  static connect(port: number, creds: ClientCreds, host = '127.0.0.1'): Promise<TakClient> {
    return new Promise((resolve, reject) => {
      const sock = tls.connect({ host, port, servername: 'localhost', ca: readFileSync(creds.ca), cert: readFileSync(creds.cert), key: readFileSync(creds.key) });
      const c = new TakClient(sock);
      sock.once('secureConnect', () => resolve(c));
      sock.once('error', reject);
    });
  }

  private parse(): void {
    for (;;) {
      if (this.mode === 'xml') {
        const i = this.buf.indexOf(END);
        if (i < 0) return;
        const f = this.buf.toString('utf8', 0, i + END.length);
        const frame = f.slice(f.indexOf('<event'));
        this.buf = this.buf.subarray(i + END.length);
        this.frames.push(frame);
        // the answer switches us at once: the very next byte is protobuf
        if (this.asked && frame.includes('t-x-takp-r')) {
          this.asked = false;
          if (/<TakResponse status="true"/.test(frame)) this.mode = 'protobuf';
        }
      } else {
        // 0xBF, varint, message
        if (this.buf.length < 2) return;
        if (this.buf[0] !== 0xbf) throw new Error(`protobuf stream without magic byte: ${this.buf.subarray(0, 16).toString('hex')}`);
        let len = 0, mul = 1, p = 1;
        for (;;) {
          if (p >= this.buf.length) return;
          const c = this.buf[p++];
          len += (c & 0x7f) * mul;
          mul *= 128;
          if (c < 0x80) break;
        }
        if (this.buf.length < p + len) return;
        const msg = Buffer.from(this.buf.subarray(p, p + len));
        this.buf = this.buf.subarray(p + len);
        this.messages.push(msg);
        this.frames.push(pbjsToXml(msg));
      }
    }
  }

  /** Waits for the announcement, asks for `version`, waits for the answer. Returns its status. */
  async negotiate(version = '1', uid = `protouid-${Math.random().toString(36).slice(2)}`): Promise<{ status: string; response: string; announcement: string }> {
    await this.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'the t-x-takp-v announcement');
    const announcement = this.frames.find((x) => x.includes('t-x-takp-v'))!;
    this.asked = true;
    this.sock.write(takRequest(uid, version));
    await this.waitFor((f) => f.some((x) => x.includes('t-x-takp-r')), 5000, 'the t-x-takp-r response');
    const response = this.frames.find((x) => x.includes('t-x-takp-r'))!;
    const status = /<TakResponse status="([^"]*)"/.exec(response)?.[1] ?? '';
    return { status, response, announcement };
  }

  /** Sends an XML event in the negotiated format (protobuf made by node-cot). */
  send(xml: string): void {
    this.sock.write(this.encode(xml));
  }

  encode(xml: string): Buffer {
    return this.mode === 'protobuf' ? streamFrame(new CoT(xml).to_proto()) : Buffer.from(xml);
  }

  /** Frames other than the announcement and the negotiation answer. */
  cot(): string[] {
    return this.frames.filter((f) => !f.includes('t-x-takp-'));
  }

  close(): void {
    this.sock.destroy();
  }
}

export function takRequest(uid: string, version = '1'): string {
  const t = new Date().toISOString();
  const stale = new Date(Date.now() + 60000).toISOString();
  return `<event version="2.0" uid="${uid}" type="t-x-takp-q" time="${t}" start="${t}" stale="${stale}" how="m-g">` +
    `<point lat="0.0" lon="0.0" hae="0.0" ce="999999" le="999999"/><detail><TakControl><TakRequest version="${version}"/></TakControl></detail></event>`;
}
