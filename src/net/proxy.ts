// PROXY protocol (v1 text and v2 binary, https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt)
// from the TCP load balancers in front of a cluster (HAProxy `send-proxy-v2`, nginx stream
// `proxy_protocol on`, AWS NLB). Without it every client behind the balancer has the balancer's
// address: the per-IP connection limit counts them all as one, and the audit log names the
// balancer instead of the device. Only connections from the addresses given in --proxy-protocol
// may (and must) send the header: anyone else claiming an address is not believed.
import { SocketAddress, isIPv4, isIPv6, type Socket } from 'node:net';

/** where a proxied connection really comes from (set on the raw socket once its header is read) */
const peerKey = Symbol('cotstream.peer');

export interface ProxyPeer { address: string; port: number }

type Tagged = { [peerKey]?: ProxyPeer; _parent?: Tagged; remoteAddress?: string; remotePort?: number };

/** The client's address and port: the one the load balancer reported, else the socket's own. */
export function peerOf(sock: object): { address: string | undefined; port: number | undefined } {
  const s = sock as Tagged;
  const p = s[peerKey] ?? s._parent?.[peerKey]; // a TLS socket carries the raw one as _parent
  return p ?? { address: s.remoteAddress, port: s.remotePort };
}

export class ProxyHeaderError extends Error {}

const V2_SIG = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
const V1_MAX = 107; // the longest v1 line, CRLF included
/** v2 headers may carry TLVs (AWS: VPC endpoint id; HAProxy: ALPN, unique id); more is refused */
const V2_MAX_BODY = 4096;

/**
 * Parse a PROXY header at the start of `buf`. Returns null while more bytes are needed, else the
 * header's length and the client it names (null: the balancer speaks for itself — v2 LOCAL, v1
 * UNKNOWN, or a non-IP family — and the socket's own address stands). Throws ProxyHeaderError
 * when the bytes cannot be a PROXY header.
 */
export function parseProxyHeader(buf: Buffer): { length: number; peer: ProxyPeer | null } | null {
  const n = Math.min(buf.length, V2_SIG.length);
  if (buf.subarray(0, n).equals(V2_SIG.subarray(0, n))) return n < V2_SIG.length ? null : parseV2(buf);
  const m = Math.min(buf.length, 6);
  if (buf.toString('latin1', 0, m) !== 'PROXY '.slice(0, m)) throw new ProxyHeaderError('no PROXY protocol header');
  const end = buf.indexOf('\r\n', 0, 'latin1');
  if (end < 0) {
    if (buf.length >= V1_MAX) throw new ProxyHeaderError('PROXY v1 header longer than 107 bytes');
    return null;
  }
  if (end + 2 > V1_MAX) throw new ProxyHeaderError('PROXY v1 header longer than 107 bytes');
  return { length: end + 2, peer: parseV1(buf.toString('latin1', 6, end)) };
}

function parseV1(line: string): ProxyPeer | null {
  const f = line.split(' ');
  if (f[0] === 'UNKNOWN') return null;
  if (f.length !== 5 || (f[0] !== 'TCP4' && f[0] !== 'TCP6')) throw new ProxyHeaderError(`bad PROXY v1 header "PROXY ${line}"`);
  const [, src, , sport] = f;
  const isIp = f[0] === 'TCP4' ? isIPv4 : isIPv6;
  if (!isIp(src) || !isIp(f[2]) || !validPort(sport) || !validPort(f[4])) throw new ProxyHeaderError(`bad PROXY v1 header "PROXY ${line}"`);
  return { address: src, port: Number(sport) };
}

function parseV2(buf: Buffer): { length: number; peer: ProxyPeer | null } | null {
  if (buf.length < 16) return null;
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) throw new ProxyHeaderError(`PROXY v2 header with version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) throw new ProxyHeaderError(`PROXY v2 header with command ${cmd}`);
  const fam = buf[13];
  const len = buf.readUInt16BE(14);
  if (len > V2_MAX_BODY) throw new ProxyHeaderError(`PROXY v2 header of ${len} bytes (at most ${V2_MAX_BODY})`);
  if (buf.length < 16 + len) return null;
  const length = 16 + len;
  if (cmd === 0) return { length, peer: null }; // LOCAL: the balancer's own connection (health check)
  const af = fam >> 4;
  if (af === 1) { // AF_INET: src 4, dst 4, sport 2, dport 2
    if (len < 12) throw new ProxyHeaderError('PROXY v2 IPv4 header too short');
    return { length, peer: { address: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`, port: buf.readUInt16BE(24) } };
  }
  if (af === 2) { // AF_INET6: src 16, dst 16, sport 2, dport 2
    if (len < 36) throw new ProxyHeaderError('PROXY v2 IPv6 header too short');
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + 2 * i).toString(16));
    // spelled as Node spells remoteAddress (RFC 5952, IPv4-mapped as ::ffff:a.b.c.d): one
    // spelling per client for limits and logs
    const address = new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
    return { length, peer: { address, port: buf.readUInt16BE(48) } };
  }
  return { length, peer: null }; // AF_UNSPEC or AF_UNIX: nothing to say about the client's IP
}

function validPort(s: string): boolean {
  return /^(0|[1-9][0-9]{0,4})$/.test(s) && Number(s) <= 65535;
}

/**
 * Read the PROXY header from a fresh connection, then hand the socket on with whatever followed
 * the header put back (the TLS layer reads it from there). `fail` gets a ProxyHeaderError, or
 * 'timeout' when no complete header came within `timeoutMs`; the socket is destroyed either way.
 */
export function readProxyHeader(sock: Socket, timeoutMs: number, done: (sock: Socket) => void, fail: (err: ProxyHeaderError | 'timeout') => void): void {
  let buf: Buffer = Buffer.alloc(0);
  const finish = (): void => {
    clearTimeout(timer);
    sock.off('readable', onReadable);
    sock.off('close', onClose);
    sock.off('error', onError);
  };
  // a balancer that hangs up (or resets) before its header is done: nothing to report
  const onClose = (): void => { finish(); };
  // until the TLS server has the socket, its errors (ECONNRESET) are ours, or they would be thrown
  const onError = (): void => { finish(); sock.destroy(); };
  const timer = setTimeout(() => { finish(); sock.destroy(); fail('timeout'); }, timeoutMs);
  const onReadable = (): void => {
    let chunk: Buffer | null;
    while ((chunk = sock.read() as Buffer | null) !== null) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      let h: ReturnType<typeof parseProxyHeader>;
      try {
        h = parseProxyHeader(buf);
      } catch (err) {
        finish();
        sock.destroy();
        fail(err as ProxyHeaderError);
        return;
      }
      if (h === null) continue;
      finish();
      if (h.peer) (sock as Tagged)[peerKey] = h.peer;
      if (buf.length > h.length) sock.unshift(buf.subarray(h.length));
      done(sock);
      return;
    }
  };
  sock.on('readable', onReadable);
  sock.on('close', onClose);
  sock.on('error', onError);
}
