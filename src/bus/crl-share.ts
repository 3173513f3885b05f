// The revocation list a Redis cluster shares. Redis holds the newest CA-signed X.509 CRL (a hash
// beside the channel: `t` its this_update in ms, `der` its bytes); whoever puts a newer one there
// (`cotstream revoke --redis`, or a node offering the one it kept on disk) announces it on the
// channel with a header-only `crl` batch, and every node fetches it, verifies it against its CA
// and enforces it beside its own --crl (ClusterCrl). Kept in Redis, not only announced: a node
// that starts or reconnects later reads it there.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { BatchType, encodeBatch } from './codec.ts';
import { redisOptions, type RedisTlsFiles } from './redis.ts';
import { parseDerCrl } from '../auth/crl-x509.ts';

/** What the bus needs of the node's cluster list (ClusterCrl). */
export interface CrlShare {
  /** the newest signed list this node holds, if any */
  newest(): { der: Buffer; at: number } | undefined;
  /** a list read from Redis: enforced if signed by our CA and newer (or, at the same time, other) */
  offer(der: Buffer, from: string): 'applied' | 'same' | 'older' | 'rejected';
}

export const crlKey = (channel: string): string => `${channel}:crl`;

/** KEYS: the hash, the channel. ARGV: this_update ms, DER, notice. Only a newer list replaces the one there. */
const OFFER = `local t = tonumber(redis.call('HGET', KEYS[1], 't') or '-1')
if tonumber(ARGV[1]) > t then
  redis.call('HSET', KEYS[1], 't', ARGV[1], 'der', ARGV[2])
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return 1
end
return 0`;

/** Put `der` in Redis if it is newer than what is there, and tell every node. True when it was. */
export async function offerCrl(redis: Redis, channel: string, der: Buffer, at: number, node: string, epoch: number): Promise<boolean> {
  const notice = encodeBatch({ type: BatchType.crl, node, epoch, seq: 0 }, []);
  return (await redis.eval(OFFER, 2, crlKey(channel), channel, String(at), der, notice)) === 1;
}

/** The list Redis holds, if any. */
export async function fetchCrl(redis: Redis, channel: string): Promise<Buffer | undefined> {
  return (await redis.hgetBuffer(crlKey(channel), 'der')) ?? undefined;
}

/**
 * `revoke --redis` / `crl refresh --redis`: push a freshly signed list, once, failing fast (a
 * command, not a node: no reconnecting in the background). False when Redis holds a newer one.
 */
export async function pushCrl(url: string, tls: RedisTlsFiles, channel: string, der: Buffer): Promise<boolean> {
  // ordered by the this_update it was signed with (whole seconds), as the nodes order it
  const at = parseDerCrl(der).thisUpdate.getTime();
  const r = new Redis(url, { ...redisOptions(url, 'pub', 'cli', tls), connectionName: 'cotstream:cli', retryStrategy: () => null });
  // ioredis rejects with "Connection is closed."; the error event says why (ECONNREFUSED, NOAUTH…)
  let cause: Error | undefined;
  r.on('error', (err: Error) => { cause ??= err; });
  try {
    await r.connect();
    // no node id: no node takes the notice for its own or a peer's
    return await offerCrl(r, channel, der, at, '', randomBytes(4).readUInt32LE(0));
  } catch (err) {
    throw cause ?? err;
  } finally {
    r.disconnect();
  }
}
