// Address lists given by the operator (IPs and CIDRs): who may read /metrics, which load
// balancers send a PROXY protocol header.
import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** Parse "10.0.0.0/8, 192.168.1.7, 2001:db8::/32"; '' gives null (no list). `what` names the
 *  setting in errors. */
export function parseAllowList(spec: string, what = '--metrics-allow (COTSTREAM_METRICS_ALLOW)'): BlockList | null {
  if (!spec.trim()) return null;
  const list = new BlockList();
  for (const raw of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const parts = raw.split('/');
    const [addr, bits] = parts;
    const type = parts.length <= 2 && (isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : null);
    if (!type) throw new Error(`${what}: "${raw}" is not an IP address or CIDR`);
    if (bits === undefined) list.addAddress(addr, type);
    else {
      // digits only: Number('') is 0, and "10.9.8.7/" would have allowed every address (/0)
      const prefix = /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
      if (!(prefix <= (type === 'ipv4' ? 32 : 128))) throw new Error(`${what}: bad prefix in "${raw}" (a CIDR is ADDRESS/BITS)`);
      list.addSubnet(addr, prefix, type);
    }
  }
  return list;
}

/** Is a socket's remote address on the list (IPv4-mapped IPv6 addresses count as IPv4)? */
export function addressAllowed(list: BlockList | null, remote: string | undefined): boolean {
  if (!list) return true;
  if (!remote) return false;
  const v4mapped = remote.startsWith('::ffff:') && isIPv4(remote.slice(7)) ? remote.slice(7) : null;
  if (v4mapped) return list.check(v4mapped, 'ipv4');
  return list.check(remote, isIPv4(remote) ? 'ipv4' : 'ipv6');
}
