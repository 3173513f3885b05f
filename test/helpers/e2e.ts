// One in-process server for a describe block, the clients its tests open (closed after each test,
// and the server left with no session before the next), and the sentinel idiom: "X did not
// receive E" is proven without sleeping — after E the sender broadcasts a sentinel, and events from
// one sender reach a recipient in order, so once X has the sentinel it would have had E.
import { testPki, type SharedPki } from './pki.ts';
import { startTestServer, type TestServer } from './server.ts';
import { CotClient, sleep } from './client.ts';

/** the server's protocol announcement: the last event of a newcomer's replay */
export const ANNOUNCE = 'type="t-x-takp-v"';

let seq = 0;

/** A GeoChat-like event with an explicit <marti> (or none): uid is unique per call. */
export function chatEv(tag: string, marti = ''): string {
  const t = new Date().toISOString();
  const stale = new Date(Date.now() + 3600_000).toISOString();
  return `<event version="2.0" uid="GeoChat.${tag}.${++seq}" type="b-t-f" time="${t}" start="${t}" stale="${stale}" how="h-g-i-g-o">` +
    '<point lat="0.0" lon="0.0" hae="9999999.0" ce="9999999.0" le="9999999.0"/>' +
    `<detail><__chat senderCallsign="S" chatroom="R"/><remarks source="BAO.F.ATAK.x">${tag}</remarks>${marti}</detail></event>`;
}

export interface E2eServer {
  pki: SharedPki;
  srv: TestServer;
  /** closed after each test: a test adds what it opens itself */
  open: Array<{ close(): void }>;
  /** a client of certificate `name`, connected, its replay received (the announcement) */
  connect(name: string): Promise<CotClient>;
  /** `from` broadcasts a sentinel; resolves when every client in `to` has it */
  sentinel(from: CotClient, to: CotClient[]): Promise<void>;
}

/** Call inside a describe: its hooks start the server before the tests and stop it after. */
export function e2eServer(): E2eServer {
  const e = { open: [] as Array<{ close(): void }> } as E2eServer;
  e.connect = async (name) => {
    const c = await CotClient.connect(e.srv.port, await e.pki.client(name));
    e.open.push(c);
    await c.waitFor((f) => f.some((x) => x.includes(ANNOUNCE)), 5000, 'announcement');
    return c;
  };
  e.sentinel = async (from, to) => {
    const tag = `sentinel-${++seq}`;
    from.send(chatEv(tag));
    for (const c of to) await c.waitFor((f) => f.some((x) => x.includes(`>${tag}<`)), 5000, tag);
  };
  before(async function () {
    this.timeout(60000);
    e.pki = await testPki();
    e.srv = await startTestServer(e.pki.dir);
  });
  afterEach(async () => {
    while (e.open.length) e.open.pop()!.close();
    // let the server see every close before the next test counts sessions
    const deadline = Date.now() + 5000;
    while (e.srv.server.router.sessions.size > 0 && Date.now() < deadline) await sleep(10);
  });
  after(async () => { await e.srv?.stop(); });
  return e;
}
