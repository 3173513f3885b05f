// Acceptance: hostile and real-client traffic over the wire against one server, checking what an
// operator sees afterwards — the server alive, other clients unaffected, the metric counted, one
// log line per offender.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import { readdirSync, readFileSync } from 'node:fs';
import forge from 'node-forge';
import { join } from 'node:path';
import { testPki, type SharedPki as TestPki } from '../helpers/pki.ts';
import { startTestServer, spawnServer, ROOT, type TestServer, type SpawnedServer } from '../helpers/server.ts';
import { CotClient, sa, sleep } from '../helpers/client.ts';
import { TakClient } from '../helpers/takclient.ts';

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
    // nor white space first: between events (here, before the first) it is not junk but ignored,
    // and 1 run in 60 started with some
    junk[0] = 0x41;
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

  it('giant frame, invalid UTF-8, billion laughs, 10,000 events in one write: each counted, one line per offender', async function () {
    this.timeout(30000);
    const drop = (r: string) => srv.metric('cot_events_dropped_total', { reason: r });
    const t = new Date().toISOString();
    const head = (uid: string) => `<event version="2.0" uid="${uid}" type="a-f-G" time="${t}" start="${t}" stale="2030-01-01T00:00:00Z" how="m-g"><point lat="1" lon="2" hae="0" ce="9" le="9"/>`;
    const cases: Array<{ who: string; reason: string; n: number; payload: Buffer }> = [
      { who: 'delta', reason: 'oversize', n: 1, payload: Buffer.from(head('giant') + '<detail><remarks>' + 'A'.repeat(3 << 20) + '</remarks></detail></event>') },
      { who: 'echo', reason: 'malformed', n: 2, payload: Buffer.concat([Buffer.from(head('utf8') + '<detail><remarks>'), Buffer.from([0xc3, 0x28, 0xed, 0xa0, 0x80]), Buffer.from('</remarks></detail></event>'), Buffer.from(head('nul') + '<detail><remarks>\u0000</remarks></detail></event>')]) },
      { who: 'foxtrot', reason: 'malformed', n: 2, // the DOCTYPE, then the event naming an entity it never gets
         payload: Buffer.from('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>' + head('lol') + '<detail><remarks>&c;</remarks></detail></event>') },
      { who: 'golf', reason: 'rate_limit', n: 10000 - 500, payload: Buffer.from((head('tiny') + '<detail/></event>').repeat(10000)) },
    ];
    const watcher = await connect('hotel');
    for (const c of cases) {
      const before = await drop(c.reason);
      const receivedBefore = await srv.metric('cot_events_received_total');
      const seenBefore = watcher.frames.length;
      const x = await connect(c.who);
      x.send(c.payload);
      await sleep(1500);
      const dropped = (await drop(c.reason)) - before;
      // every drop is of an event received: a dropped/received ratio never passes 1
      const received = (await srv.metric('cot_events_received_total')) - receivedBefore;
      assert.ok(received >= dropped && received <= (c.reason === 'rate_limit' ? 10000 : c.n), `${c.who}: ${received} received, ${dropped} dropped`);
      // the rate bucket refills (100/s by default) while the 10,000 are read
      assert.ok(Math.abs(dropped - c.n) <= (c.reason === 'rate_limit' ? 500 : 0), `${c.who}: ${dropped} dropped as ${c.reason}, expected about ${c.n}`);
      const lines = srv.logs.filter((l) => l.cn === c.who && (l.audit === 'bad_input' || l.audit === 'rate_limit'));
      assert.equal(lines.length, 1, `${c.who}: one line, got ${JSON.stringify(lines).slice(0, 400)}`);
      assert.equal(x.closed, false, `${c.who} stays connected`);
      const leaked = watcher.frames.slice(seenBefore).filter((f) => /uid="(giant|utf8|nul|lol)"/.test(f));
      assert.deepEqual(leaked, [], 'nothing rejected reaches anyone');
      await alive();
    }
  });

  it('an SA padded to 200 KB reaches the clients connected now, but is never replayed to newcomers (they would all download it)', async () => {
    const big = await connect('charlie');
    const rx = await connect('bravo');
    big.send(sa('uid-big', 'BIG'));
    await rx.waitFor((f) => f.some((x) => x.includes('uid="uid-big"')), 5000, 'the small SA live');
    const padded = sa('uid-big', 'BIG').replace('<detail>', `<detail><remarks>${'p'.repeat(200_000)}</remarks>`);
    big.send(padded);
    await rx.waitFor((f) => f.some((x) => x.includes('uid="uid-big"') && x.length > 200_000), 5000, 'the padded SA live');
    const newcomer = await connect('delta');
    await newcomer.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'the replay and announcement');
    const replayed = newcomer.frames.filter((x) => x.includes('uid="uid-big"'));
    assert.equal(replayed.length, 1, 'the last SA of a sane size is replayed');
    assert.ok(replayed[0].length < 2000, `a ${replayed[0].length}-byte SA replayed`);
    assert.ok(newcomer.bytes < 50_000, `the newcomer downloaded ${newcomer.bytes} bytes`);
  });

  it('expired and not-yet-valid certificates from our own CA: refused before any CoT, counted bad_cert', async () => {
    const caCert = forge.pki.certificateFromPem(readFileSync(join(pki.dir, 'ca.pem'), 'utf8'));
    const caKey = forge.pki.privateKeyFromPem(readFileSync(join(pki.dir, 'ca.key'), 'utf8'));
    const keys = forge.pki.rsa.generateKeyPair(2048);
    for (const [from, to, code] of [['2020-01-01', '2021-01-01', 'CERT_HAS_EXPIRED'], ['2035-01-01', '2036-01-01', 'CERT_NOT_YET_VALID']] as const) {
      const c = forge.pki.createCertificate();
      c.publicKey = keys.publicKey;
      c.serialNumber = randomBytes(8).toString('hex').replace(/^[89a-f]/, '1');
      c.validity.notBefore = new Date(from);
      c.validity.notAfter = new Date(to);
      c.setSubject([{ name: 'commonName', value: 'timetraveller' }]);
      c.setIssuer(caCert.subject.attributes);
      c.setExtensions([{ name: 'basicConstraints', cA: false }, { name: 'extKeyUsage', clientAuth: true }]);
      c.sign(caKey, forge.md.sha256.create());
      const before = await srv.metric('cot_handshakes_total', { result: 'bad_cert' });
      const sock = tls.connect({ host: '127.0.0.1', port: srv.port, servername: 'localhost', ca: readFileSync(join(pki.dir, 'ca.pem')), cert: forge.pki.certificateToPem(c), key: forge.pki.privateKeyToPem(keys.privateKey) });
      let got = 0;
      sock.on('data', (d: Buffer) => { got += d.length; });
      sock.on('error', () => undefined);
      await new Promise<void>((r) => sock.once('close', () => r()));
      assert.equal(got, 0, `${code}: no CoT`);
      assert.equal(await srv.metric('cot_handshakes_total', { result: 'bad_cert' }) - before, 1, code);
      assert.ok(srv.logs.some((l) => l.audit === 'refused' && l.code === code && l.cn === 'timetraveller' && l.serial === c.serialNumber.replace(/^0+/, '')), `${code} logged with the certificate's CN and serial`);
    }
    await alive();
  });

  it('a certificate whose CN holds commas, pluses, quotes, non-ASCII and a control character is named exactly', async () => {
    const caCert = forge.pki.certificateFromPem(readFileSync(join(pki.dir, 'ca.pem'), 'utf8'));
    const caKey = forge.pki.privateKeyFromPem(readFileSync(join(pki.dir, 'ca.key'), 'utf8'));
    const keys = forge.pki.rsa.generateKeyPair(2048);
    const cn = 'Smith, John + "Ö" \\ <x>;#\u0001=y';
    const c = forge.pki.createCertificate();
    c.publicKey = keys.publicKey;
    c.serialNumber = '1' + randomBytes(8).toString('hex');
    c.validity.notBefore = new Date(Date.now() - 60_000);
    c.validity.notAfter = new Date(Date.now() + 86_400_000);
    c.setSubject([{ name: 'organizationName', value: 'O, Inc' }, { name: 'commonName', value: cn, valueTagClass: forge.asn1.Type.UTF8 } as unknown as forge.pki.CertificateField]);
    c.setIssuer(caCert.subject.attributes);
    c.setExtensions([{ name: 'basicConstraints', cA: false }, { name: 'extKeyUsage', clientAuth: true }]);
    c.sign(caKey, forge.md.sha256.create());
    const sock = tls.connect({ host: '127.0.0.1', port: srv.port, servername: 'localhost', ca: readFileSync(join(pki.dir, 'ca.pem')), cert: forge.pki.certificateToPem(c), key: forge.pki.privateKeyToPem(keys.privateKey) });
    sock.on('error', () => undefined);
    await new Promise<void>((r) => sock.once('secureConnect', () => r()));
    for (let i = 0; i < 50 && !srv.logs.some((l) => l.audit === 'accepted' && l.serial === c.serialNumber); i++) await sleep(20);
    const line = srv.logs.find((l) => l.audit === 'accepted' && l.serial === c.serialNumber);
    sock.destroy();
    assert.ok(line, 'accepted line');
    assert.equal(line.cn, cn);
  });
});

describe('e2e: acceptance (real clients against the real process)', function () {
  let pki: TestPki;
  let srv: SpawnedServer;
  const clients: Array<{ close(): void }> = [];
  const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${srv.metricsPort}/metrics`)).text();

  before(async function () {
    this.timeout(60000);
    pki = await testPki();
    srv = await spawnServer(['--certs-dir', pki.dir]);
  });
  afterEach(() => { while (clients.length) clients.pop()!.close(); });
  after(async () => { assert.equal(await srv?.stop('SIGTERM'), 0, 'SIGTERM exits 0'); });

  it('ATAK, WinTAK, iTAK, goatak, pytak and a TAK-protocol client: every sample to everyone else, in order, once, without <marti>', async function () {
    this.timeout(30000);
    const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo'] as const;
    const [atak, win, itak, goat, py] = await Promise.all(names.map(async (n) => {
      const c = await CotClient.connect(srv.port, await pki.client(n));
      clients.push(c);
      return c;
    }));
    const pb = await TakClient.connect(srv.port, await pki.client('foxtrot'));
    clients.push(pb);
    assert.equal((await pb.negotiate()).status, 'true');
    const t = new Date().toISOString();
    const stale = new Date(Date.now() + 600_000).toISOString();
    const q = (s: string) => s.replaceAll('"', "'");
    const saOf = (uid: string, cs: string) => `<event version="2.0" uid="${uid}" type="a-f-G-U-C" time="${t}" start="${t}" stale="${stale}" how="m-g"><point lat="1.5" lon="2.5" hae="3" ce="9.9" le="9999999"/><detail><contact endpoint="*:-1:stcp" callsign="${cs}"/><__group name="Cyan" role="Team Member"/></detail></event>`;
    // each client's own dialect: ATAK single-quoted declaration before every event, WinTAK a
    // double-quoted one with CRLF, iTAK newline, goatak bare, pytak its hello then newline-separated
    atak.send(`<?xml version='1.0' encoding='UTF-8' standalone='yes'?>` + q(saOf('ANDROID-acc', 'ATAK')));
    // WinTAK is HUMMER: the GeoChat sample is addressed to it
    win.send(`<?xml version="1.0" encoding="utf-8" standalone="yes"?>\r\n${saOf('S-1-5-21-acc', 'HUMMER')}\r\n`);
    itak.send(`<?xml version="1.0" encoding="UTF-8"?>\n${saOf('IOS-acc', 'ITAK')}\n`);
    goat.send(saOf('goatak-acc', 'GOATAK'));
    py.send(`<event version="2.0" uid="takPing" type="t-x-d-d" time="${t}" start="${t}" stale="${stale}" how="m-g"><point lat="0" lon="0" hae="0" ce="9999999" le="9999999"/><detail/></event>\n${saOf('pytak-acc', 'PYTAK')}\n`);
    pb.send(saOf('proto-acc', 'PROTO'));
    const xmlClients = [atak, win, itak, goat, py];
    for (const c of xmlClients) await c.waitFor((f) => f.filter((x) => /type=["']a-f-G-U-C/.test(x)).length >= 5, 5000, 'five SAs');
    await pb.waitFor((f) => f.filter((x) => x.includes('a-f-G-U-C')).length >= 5, 5000, 'five SAs (protobuf)');

    // every sample, from ATAK, each with its own declaration as sent
    const dir = join(ROOT, 'protocol', 'samples');
    const samples = readdirSync(dir).filter((f) => f.endsWith('.xml')).sort();
    const routed: string[] = [];
    let direct = '';
    let wire = '';
    for (const f of samples) {
      const raw = readFileSync(join(dir, f), 'utf8').replaceAll('TIME', t);
      const type = /type=["']([^"']+)/.exec(raw)![1]!;
      if (type === 't-x-takp-q') continue; // it would switch ATAK to protobuf
      wire += raw + '\n';
      if (type.startsWith('t-x-c-') || type.startsWith('t-x-takp-')) continue; // control: consumed
      // forwarded from <event to </event>, byte for byte, only <marti> removed
      const ev = raw.slice(raw.indexOf('<event')).trimEnd();
      if (ev.includes('<marti>')) direct = ev.replace(/<marti>[\s\S]*?<\/marti>/, '');
      else routed.push(ev);
    }
    assert.ok(routed.length >= 4 && direct.includes('b-t-f'), 'the samples hold broadcasts and a directed GeoChat');
    const before = atak.frames.length;
    atak.send(wire);
    await atak.waitFor((f) => f.slice(before).filter((x) => x.includes('t-x-c-t-r')).length === 2, 5000, 'a pong per ping');
    for (const c of [win, itak, goat, py]) {
      const expected = c === win ? [...routed.slice(0, 1), direct, ...routed.slice(1)] : routed;
      await c.waitFor((f) => expected.every((r) => f.includes(r)), 5000, 'every routed sample, byte for byte');
      assert.deepEqual(c.frames.filter((x) => expected.includes(x)), expected, 'in order, once each');
      if (c !== win) assert.ok(!c.frames.includes(direct), 'the GeoChat only reaches its dest');
    }
    await pb.waitFor((f) => f.some((x) => x.includes('b-a-o-tbl')) && f.some((x) => x.includes('b-m-p-s-m')), 5000, 'samples at the protobuf client');
    await sleep(200);
    // never to the sender, never a control frame forwarded, never a <marti>
    for (const c of [...xmlClients, pb]) {
      assert.ok(!c.frames.some((x) => x.includes('<marti')), 'no <marti> delivered');
      assert.ok(!c.frames.some((x) => /type=["']t-x-c-t["']/.test(x)), 'no ping forwarded');
      assert.ok(!c.frames.some((x) => /uid=["']takPing["']/.test(x)), 'no pytak hello forwarded');
    }
    assert.ok(!atak.frames.some((x) => routed.includes(x) || x === direct), 'the sender gets none of its own');
    for (const c of xmlClients) {
      const dup = c.frames.filter((x, i) => !x.includes('takPong') && c.frames.indexOf(x) !== i);
      assert.deepEqual(dup, [], 'nothing twice');
    }
    // a newcomer gets every SA, then the announcement; a leaver is announced with its SA type
    const late = await CotClient.connect(srv.port, await pki.client('golf'));
    clients.push(late);
    await late.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'the announcement');
    const replay = late.frames.slice(0, -1).map((x) => /uid=["']([^"']+)/.exec(x)![1]).sort();
    assert.deepEqual(replay, ['ANDROID-acc', 'IOS-acc', 'S-1-5-21-acc', 'goatak-acc', 'proto-acc', 'pytak-acc']);
    win.close();
    await late.waitFor((f) => f.some((x) => x.includes('t-x-d-d') && x.includes('uid="S-1-5-21-acc" relation="p-p" type="a-f-G-U-C"')), 5000, 'the WinTAK delete');
  });
});
