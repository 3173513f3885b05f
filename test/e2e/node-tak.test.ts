// Interop with a client library nobody here wrote: @tak-ps/node-tak 8.3.0 (pinned: later versions
// need Node 22). It does not verify the server and fires secureConnect even when the server then
// rejects it under TLS 1.3, so its first 'ping' event (a pong arrived) is the proof of acceptance.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import TAK, { CoT } from '@tak-ps/node-tak';
import { testPki, type SharedPki as TestPki } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { CotClient, sa, sleep } from '../helpers/client.ts';

function once<T>(emitter: { once(ev: string, f: (v: T) => void): unknown }, ev: string, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${ev}' within ${ms} ms`)), ms);
    emitter.once(ev, (v: T) => { clearTimeout(t); resolve(v); });
  });
}

describe('e2e: @tak-ps/node-tak 8.3.0 interop', function () {
  let pki: TestPki;
  let srv: TestServer;
  const origError = console.error;

  before(async function () {
    this.timeout(60000);
    pki = await testPki();
    srv = await startTestServer(pki.dir);
    // node-tak narrates every connect on stderr; keep test output readable
    console.error = (...args: unknown[]) => { if (!String(args[0]).startsWith('ok - ')) origError(...args); };
  });
  after(async () => { console.error = origError; await srv?.stop(); });

  /** a node-tak client (its own connection code, not ours) with the certificate `c` */
  const nodeTak = (id: string, c: { cert: string; key: string }) =>
    TAK.connect(id, new URL(`ssl://127.0.0.1:${srv.port}`), { cert: readFileSync(c.cert, 'utf8'), key: readFileSync(c.key, 'utf8') });

  it('connects with a generated certificate, gets pongs, and exchanges events with another client', async () => {
    const tak = await nodeTak('interop', await pki.client('node-tak'));
    try {
      await once(tak, 'ping', 5000);
      assert.equal(tak.open, true);
      const other = await CotClient.connect(srv.port, await pki.client('bravo'));
      try {
        await sleep(50);
        // node-tak -> other
        tak.write([new CoT(sa('node-tak-uid', 'NODETAK'))]);
        await other.waitFor((f) => f.some((x) => x.includes('uid="node-tak-uid"')), 5000, 'node-tak SA');
        const got = other.cot().find((x) => x.includes('uid="node-tak-uid"'))!;
        assert.match(got, /callsign="NODETAK"/);
        // other -> node-tak
        const received = once<InstanceType<typeof CoT>>(tak, 'cot', 5000);
        other.send(sa('bravo-uid', 'BRAVO'));
        const cot = await received;
        assert.equal(cot.raw.event._attributes.uid, 'bravo-uid');
        assert.equal(cot.raw.event.detail?.contact?._attributes?.callsign, 'BRAVO');
        // the pings node-tak keeps sending never reach the other client
        assert.equal(other.cot().filter((x) => x.includes('t-x-c-t')).length, 0);
      } finally {
        other.close();
      }
    } finally {
      tak.destroy();
    }
  });

  it('receives events whose sender put a line break or tab after <event', async () => {
    // node-tak finds an event with /<event[ >][\s\S]*?<\/event>/: '<event\n' does not match, and the
    // event went by unseen (C#'s XmlWriter with NewLineOnAttributes writes it so)
    const tak = await nodeTak('interop2', await pki.client('node-tak-2'));
    try {
      await once(tak, 'ping', 5000);
      const got: string[] = [];
      tak.on('cot', (c: InstanceType<typeof CoT>) => { got.push(c.raw.event._attributes.uid); });
      const other = await CotClient.connect(srv.port, await pki.client('bravo'));
      try {
        await sleep(50);
        other.send(sa('uid-newline', 'NEWLINE').replace('<event version', '<event\n  version'));
        other.send(sa('uid-tab', 'TAB').replace('<event version', '<event\tversion'));
        other.send(sa('uid-plain', 'PLAIN'));
        const deadline = Date.now() + 5000;
        while (!got.includes('uid-plain') && Date.now() < deadline) await sleep(20);
        assert.deepEqual(got.filter((u) => u.startsWith('uid-')), ['uid-newline', 'uid-tab', 'uid-plain']);
      } finally {
        other.close();
      }
    } finally {
      tak.destroy();
    }
  });

  it('a node-tak client with a certificate from another CA never gets a pong', async function () {
    this.timeout(60000);
    const tak = await nodeTak('foreign', await (await testPki('foreign')).client('mallory'));
    tak.on('error', () => undefined);
    try {
      await assert.rejects(once(tak, 'ping', 1500), /no 'ping'/);
      assert.equal(tak.open, false);
    } finally {
      tak.destroy();
    }
  });
});
