// Acceptance: hostile and real-client traffic over the wire against one server, checking what an
// operator sees afterwards — the server alive, other clients unaffected, the metric counted, one
// log line per offender.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { testPki, type SharedPki as TestPki } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { CotClient, sa, sleep } from '../helpers/client.ts';

describe('e2e: acceptance (hostile traffic over the wire)', function () {
  let pki: TestPki;
  let srv: TestServer;
  const clients: CotClient[] = [];
  const connect = async (name: string): Promise<CotClient> => {
    const c = await CotClient.connect(srv.port, await pki.client(name));
    clients.push(c);
    return c;
  };
  /** the server still routes between two well-behaved clients */
  const alive = async (): Promise<void> => {
    const a = await connect('alpha');
    const b = await connect('bravo');
    await sleep(50);
    const uid = `alive-${Math.random().toString(36).slice(2)}`;
    a.send(sa(uid, 'ALIVE'));
    await b.waitFor((f) => f.some((x) => x.includes(`uid="${uid}"`)), 5000, 'an SA between two good clients');
  };

  before(async function () {
    this.timeout(60000);
    pki = await testPki();
    srv = await startTestServer(pki.dir);
  });
  afterEach(() => { while (clients.length) clients.pop()!.close(); });
  after(async () => { await srv?.stop(); });

  it('a client sending only garbage: counted, logged once with its identity, kept connected', async () => {
    const g = await connect('charlie');
    const before = await srv.metric('cot_junk_bytes_total');
    // no '<' at all: nothing here can start an event
    const junk = Buffer.from(randomBytes(4000).map((b) => (b === 0x3c ? 0x41 : b)));
    for (let i = 0; i < 5; i++) { g.send(junk); await sleep(20); }
    await sleep(300);
    assert.equal(await srv.metric('cot_junk_bytes_total') - before, 5 * junk.length);
    const lines = srv.logs.filter((l) => l.audit === 'bad_input' && l.cn === 'charlie');
    assert.equal(lines.length, 1, `one log line for the garbage, got ${JSON.stringify(lines)}`);
    assert.equal(lines[0]!.kind, 'junk');
    assert.ok(typeof lines[0]!.serial === 'string' && lines[0]!.remote, 'the line names the client');
    assert.equal(g.closed, false);
    await alive();
  });
});
