// Every connection is a file descriptor, and the process has a fixed number of them (RLIMIT_NOFILE;
// Node raises the soft limit to the hard one at start). When they run out, libuv accepts each new
// connection and closes it at once (its EMFILE trick): the client is turned away with no error,
// no log line and no metric, and the process can no longer open anything else either (a Redis
// reconnect, the revocation list). So the connection limits are cut to fit the descriptors there
// are, and what is refused is refused by us: counted and logged.
import { readFileSync } from 'node:fs';

/** descriptors kept for the process itself: stdio, listeners, Redis, file watches and reads */
export const FD_RESERVE = 64;

/** The soft limit on open files, or null where it cannot be read (not Linux) or is unlimited. */
export function openFileLimit(limitsFile = '/proc/self/limits'): number | null {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return null;
  }
  const m = /^Max open files\s+(\d+)/m.exec(text);
  return m ? Number(m[1]) : null;
}

export interface FdBudget {
  /** the client connection limit to enforce (0: unlimited) */
  clients: number;
  /** connections to the HTTP (/metrics) listener at once */
  http: number;
}

/**
 * Split the descriptors between client connections and HTTP connections. The HTTP listener gets
 * at most `httpMax` and at most an eighth of what there is; clients get at most `maxClients`
 * (0: unlimited) and never more than what is left after the reserve and the HTTP share.
 */
export function fdBudget(limit: number | null, maxClients: number, httpMax: number): FdBudget {
  if (limit === null) return { clients: maxClients, http: httpMax };
  const usable = Math.max(limit - FD_RESERVE, 16);
  const http = Math.max(4, Math.min(httpMax, Math.floor(usable / 8)));
  const room = Math.max(usable - http, 1);
  return { clients: maxClients === 0 ? room : Math.min(maxClients, room), http };
}
