#!/usr/bin/env -S node --import tsx
// The yardstick, not the product: a bare Node mutual-TLS relay with the same certificates and TLS
// settings as cotstream. It cuts frames with indexOf('</event>') and writes each one to every other
// socket, batched per tick (one corked write per socket per turn of the event loop). No parsing, no
// limits, no metrics, no logs: what the platform can do, for bench/run.ts to compare against.
// Pings (t-x-c-t, which load.ts's clients send every 30 s as ATAK does) are not forwarded, as a TAK
// server forwards none; nor answered. It sends a new client nothing (load.ts then counts it as
// connected once it has stayed open --confirm seconds).
//
// Also the bare node:tls server of the handshake comparison: with no data flowing it is exactly a
// mutual-TLS server that accepts and holds connections.
import tls from 'node:tls';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { serverCreds } from './lib/certs.ts';

const END = Buffer.from('</event>');
/** a ping (t-x-c-t): a TAK server answers it and forwards it to no one, so neither does the relay */
const PING = Buffer.from('"t-x-c-t"');
/** longer frames are never pings (a bench event is ~600 bytes, a ping ~300): no search in them */
const PING_MAX = 512;

class Peer {
  rest: Buffer | null = null;
  readonly out: Buffer[] = [];
  dirty = false;
  constructor(readonly sock: tls.TLSSocket) {}
}

export function startRelay(o: { host: string; port: number; ca: Buffer; cert: Buffer; key: Buffer }): Promise<tls.Server> {
  const peers = new Set<Peer>();
  const dirty: Peer[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    for (const p of dirty) {
      p.dirty = false;
      // corked: the batch leaves as one writev, which node's TLS layer turns into one SSL_write
      p.sock.cork();
      for (const b of p.out) p.sock.write(b);
      p.sock.uncork();
      p.out.length = 0;
    }
    dirty.length = 0;
  };
  const relay = (from: Peer, frame: Buffer) => {
    for (const p of peers) {
      if (p === from) continue;
      p.out.push(frame);
      if (!p.dirty) { p.dirty = true; dirty.push(p); }
    }
    if (!scheduled) { scheduled = true; setImmediate(flush); }
  };
  const server = tls.createServer({
    key: o.key, cert: o.cert, ca: o.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', sessionTimeout: 0,
  }, (sock) => {
    const peer = new Peer(sock);
    peers.add(peer);
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      const b = peer.rest ? Buffer.concat([peer.rest, chunk]) : chunk;
      let p = 0;
      let i: number;
      while ((i = b.indexOf(END, p)) >= 0) {
        const frame = b.subarray(p, i + END.length);
        if (frame.length > PING_MAX || frame.indexOf(PING) < 0) relay(peer, frame);
        p = i + END.length;
      }
      peer.rest = p < b.length ? b.subarray(p) : null;
    });
    const gone = () => { peers.delete(peer); peer.out.length = 0; };
    sock.on('close', gone);
    sock.on('error', gone);
  });
  server.on('tlsClientError', () => {});
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve(server));
  });
}

async function main(): Promise<void> {
  const f = new Command('relay')
    .description('bare mutual-TLS CoT relay: the ceiling bench/run.ts compares cotstream with')
    .option('--host <addr>', 'address to bind', '127.0.0.1')
    .option('--port <n>', 'TLS port (0: any free port)', '0')
    .option('--certs-dir <dir>', 'dev PKI with ca.pem, server.pem, server.key (created only when it is the repository\'s own certs/)', 'certs')
    .parse(process.argv)
    .opts();
  const c = await serverCreds(f.certsDir);
  const server = await startRelay({ host: f.host, port: Number(f.port), ca: c.ca, cert: c.cert, key: c.key });
  const addr = server.address() as { port: number };
  // one JSON line, like cotstream's 'listening' audit line, so bench/run.ts reads the port the same way
  process.stdout.write(JSON.stringify({ audit: 'listening', tls: `${f.host}:${addr.port}` }) + '\n');
  process.once('SIGTERM', () => process.exit(0));
  process.once('SIGINT', () => process.exit(0));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: Error) => { process.stderr.write(`relay: ${err.message}\n`); process.exit(1); });
}
