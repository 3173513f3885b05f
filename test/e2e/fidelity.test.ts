// The acceptance replay: real CoT captures (protocol/samples) and the unusual-but-valid XML real
// devices write, sent by an XML client over real mutual TLS and checked at every kind of receiver:
// another XML client (on the same node and across two nodes on a real redis-server), TAK Protocol
// clients after the t-x-takp negotiation (read back the way ATAK's commo rebuilds CoT from protobuf)
// and the @tak-ps/node-tak library. What must survive and what the server may change is written in
// protocol/README.md "What a recipient gets"; this file asserts it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import TAK, { CoT } from '@tak-ps/node-tak';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { TestRedis } from '../helpers/redis.ts';
import { CotClient, sa, sleep } from '../helpers/client.ts';
import { TakClient } from '../helpers/takclient.ts';
import { atakToXml, streamFrame, upstream } from '../helpers/pbjs.ts';
import { encodeTakMessage } from '../../protocol/takproto.ts';
import { normCot } from '../helpers/cotnorm.ts';
import { loadSamples } from '../helpers/samples.ts';

type Obj = Record<string, unknown>;

const NOW = new Date().toISOString();
const LATER = new Date(Date.now() + 3_600_000).toISOString();

/** The event as every XML recipient must get it: from `<event` to `</event>`, byte for byte, only
 *  the <marti> element (routing metadata) removed. */
function expectedXml(raw: string): string {
  return raw.slice(raw.indexOf('<event')).trimEnd().replace(/<marti>[\s\S]*?<\/marti>/, '');
}
const uidOf = (x: string): string => /\suid=["']([^"']+)["']/.exec(x)![1]!;

/** Unusual but valid XML, each as a device might write it (uid, wire bytes). */
function unusual(): Array<[string, string]> {
  const ev = (uid: string, detail: string, point = '<point lat="38.5" lon="-77.1" hae="10.0" ce="9.9" le="9999999.0"/>') =>
    `<event version="2.0" uid="${uid}" type="a-f-G-U-C" time="${NOW}" start="${NOW}" stale="${LATER}" how="h-e">${point}<detail>${detail}</detail></event>`;
  const links = Array.from({ length: 9000 }, (_, i) => `<link point="${(38 + i / 1e4).toFixed(7)},${(-77 - i / 1e4).toFixed(7)}"/>`).join('');
  return [
    // WinTAK-style: declaration and CRLF line endings, attributes in another order, single quotes
    ['u-crlf', `<?xml version='1.0' encoding='utf-8' standalone='yes'?>\r\n<event how='m-g' stale='${LATER}' start='${NOW}' time='${NOW}' type='a-f-G-U-C' uid='u-crlf' version='2.0'>\r\n\t<point le='9999999.0' ce='9.9' hae='10.0' lon='-77.1' lat='38.5'/>\r\n\t<detail>\r\n\t\t<contact callsign='CRLF&#x20;&#xE9;' endpoint='*:-1:stcp'/>\r\n\t\t<remarks>line one\r\nline two</remarks>\r\n\t</detail>\r\n</event>\r\n`],
    // CDATA, character and entity references, non-ASCII callsigns
    ['u-refs', ev('u-refs', `<contact callsign="Zoë &#x1F600; &amp; &lt;Ω&gt; &quot;q&quot; &apos;a&apos;" endpoint="*:-1:stcp"/><remarks><![CDATA[<b>bold</b> & </detail> ]]>&#x1F600;&amp;&lt;</remarks>`)],
    // namespaced attributes, xmlns declarations, self-closing and empty children
    ['u-ns', ev('u-ns', `<x:ext xmlns:x="urn:example" x:a="1" xml:lang="fr"/><__group name="Cyan" role="Team Member"/><archive/><empty></empty><status battery="77"/>`)],
    // a typed element ATAK would rebuild with attributes added, and one with extra attributes
    ['u-partial', ev('u-partial', `<precisionlocation altsrc="GPS"/><takv platform="WinTAK-CIV" version="5.0"/><track speed="1.5" course="-1" extra="x"/><contact callsign="A"/><contact callsign="B"/>`)],
    // hae/ce/le missing (unknown), a whitespace-padded number
    ['u-nohae', ev('u-nohae', '<contact callsign="NOHAE"/>', '<point lat=" 12.25" lon="-3.5"/>')],
    // a drawing: u-d-f with 9,000 link points (~500 KiB)
    ['u-drawing', `<event version="2.0" uid="u-drawing" type="u-d-f" time="${NOW}" start="${NOW}" stale="${LATER}" how="h-e"><point lat="38.5" lon="-77.1" hae="9999999.0" ce="9999999.0" le="9999999.0"/><detail>${links}<strokeColor value="-1"/><labels_on value="false"/></detail></event>`],
  ];
}

describe('e2e: fidelity — real captures through every kind of receiver', function () {
  this.timeout(60000);
  let pki: SharedPki;
  let redis: TestRedis;
  let A: TestServer;
  let B: TestServer;
  const open: Array<{ close(): void }> = [];
  let tak: InstanceType<typeof TAK> | null = null;
  const origError = console.error;

  before(async function () {
    pki = await testPki();
    redis = await TestRedis.start();
    [A, B] = await Promise.all(['fid-a', 'fid-b'].map((id) => startTestServer(pki.dir, { redis: redis.url, nodeId: id, busHeartbeat: '500' })));
    // node-tak narrates every connect, and every event node-cot's schema refuses, on stderr
    console.error = (...args: unknown[]) => { if (!/^(ok - |Error parsing)/.test(String(args[0]))) origError(...args); };
  });
  afterEach(() => { while (open.length) open.pop()!.close(); tak?.destroy(); tak = null; });
  after(async () => {
    console.error = origError;
    await Promise.all([A?.stop(), B?.stop()]);
    await redis?.stop();
  });

  const xmlClient = async (srv: TestServer, name: string): Promise<CotClient> => {
    const c = await CotClient.connect(srv.port, await pki.client(name));
    open.push(c);
    return c;
  };
  const protoClient = async (srv: TestServer, name: string): Promise<TakClient> => {
    const c = await TakClient.connect(srv.port, await pki.client(name));
    open.push(c);
    assert.equal((await c.negotiate()).status, 'true');
    return c;
  };

  /**
   * Receivers on both nodes, all named HUMMER (the GeoChat sample is directed to that callsign):
   * XML on A and B, protobuf on A and B, node-tak on A. Resolves once every one is identified
   * (their SAs reached the XML receivers on both nodes).
   */
  async function receivers() {
    const xa = await xmlClient(A, 'fid-xml-a');
    const xb = await xmlClient(B, 'fid-xml-b');
    const pa = await protoClient(A, 'fid-pb-a');
    const pb = await protoClient(B, 'fid-pb-b');
    const c = await pki.client('fid-nodetak');
    tak = await TAK.connect('fid', new URL(`ssl://127.0.0.1:${A.port}`), { cert: readFileSync(c.cert, 'utf8'), key: readFileSync(c.key, 'utf8') });
    const nt: CoT[] = [];
    tak.on('cot', (x: CoT) => { nt.push(x); });
    await new Promise((r) => tak!.once('ping', r));
    xa.send(sa('rx-xml-a', 'HUMMER'));
    xb.send(sa('rx-xml-b', 'HUMMER'));
    pa.send(sa('rx-pb-a', 'HUMMER'));
    pb.send(sa('rx-pb-b', 'HUMMER'));
    tak.write([new CoT(sa('rx-nodetak', 'HUMMER'))]);
    const uids = ['rx-xml-a', 'rx-xml-b', 'rx-pb-a', 'rx-pb-b', 'rx-nodetak'];
    for (const x of [xa, xb]) await x.waitFor((f) => uids.every((u) => u === (x === xa ? 'rx-xml-a' : 'rx-xml-b') || f.some((e) => e.includes(`uid="${u}"`))), 10000, 'every receiver identified');
    return { xa, xb, pa, pb, nt };
  }

  /** Writes `wire` in pieces cut at random byte positions, one TLS record each (a write per piece). */
  async function sendSplit(c: CotClient, wire: Buffer, seed: number): Promise<void> {
    let x = seed;
    const rnd = () => { x = (x * 1103515245 + 12345) % 2147483648; return x / 2147483648; };
    c.sock.setNoDelay(true);
    for (let p = 0; p < wire.length;) {
      const n = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 7 : 3000));
      c.sock.write(wire.subarray(p, p + n));
      p += n;
      if (rnd() < 0.3) await new Promise((r) => setImmediate(r));
    }
  }

  /** What the receivers got for `uid`, checked against the event as sent. */
  async function check(rx: Awaited<ReturnType<typeof receivers>>, raw: string, opts: { proto: boolean }) {
    const uid = uidOf(raw.slice(raw.indexOf('<event')));
    const want = expectedXml(raw);
    const meaning = normCot(want);
    for (const [name, c] of [['XML on the same node', rx.xa], ['XML across Redis', rx.xb]] as const) {
      await c.waitFor((f) => f.some((e) => uidOf(e) === uid), 10000, `${uid} at the ${name} client`);
      assert.deepEqual(c.frames.filter((e) => uidOf(e) === uid), [want], `${uid}: byte for byte (only <marti> removed), once, at the ${name} client`);
    }
    for (const [name, c] of [['protobuf on the same node', rx.pa], ['protobuf across Redis', rx.pb]] as const) {
      const got = () => c.messages.map((m) => atakToXml(m)).filter((e) => uidOf(e) === uid);
      if (!opts.proto) {
        assert.deepEqual(got(), [], `${uid} is not sent to the ${name} client`);
        continue;
      }
      await c.waitFor(() => got().length > 0, 10000, `${uid} at the ${name} client`);
      const g = got();
      assert.equal(g.length, 1, `${uid} once at the ${name} client`);
      assert.deepEqual(normCot(g[0]!), protoMeaning(meaning), `${uid}: what an ATAK rebuilds from the ${name} client's message`);
    }
    // node-tak keeps what node-cot's schema accepts (one <contact>, a point with hae/ce/le): an
    // event it refuses as sent it refuses from us too. Its stream reader deletes control characters
    // (REGEX_CONTROL, U+000B-U+001F: CR included) before parsing, whatever the server sends.
    let parsed: CoT | null = null;
    try { parsed = new CoT(want.replace(/[\u000B-\u001F\u007F-\u009F]/g, '')); } catch { /* node-cot refuses it */ }
    if (parsed === null) return;
    const deadline = Date.now() + 10000;
    while (!rx.nt.some((x) => x.raw.event._attributes.uid === uid) && Date.now() < deadline) await sleep(20);
    const n = rx.nt.filter((x) => x.raw.event._attributes.uid === uid);
    assert.equal(n.length, 1, `${uid} once at node-tak`);
    // (node-cot stamps its own _flow-tags_ with the time it parsed)
    const own = (c: CoT) => { const r = structuredClone(c.raw); delete r.event.detail?.['_flow-tags_']; return r; };
    assert.deepEqual(own(n[0]!), own(parsed), `${uid}: node-tak reads what was sent`);
  }

  it('every sample in protocol/samples, as captured (declarations, tabs, quotes), reaches every kind of receiver intact', async () => {
    const rx = await receivers();
    const tx = await xmlClient(A, 'fid-sender');
    const sent: string[] = [];
    for (const [name, b] of loadSamples()) {
      const raw = b.toString('utf8').replaceAll("'TIME'", `'${NOW}'`);
      if (/type=["']t-x-(c-t|takp-)/.test(raw)) continue; // control: answered or consumed, never forwarded
      assert.ok(raw.includes('<event'), name);
      sent.push(raw);
    }
    // as one stream cut at random byte positions (inside declarations, tags, UTF-8 sequences)
    await sendSplit(tx, Buffer.from(sent.join('\n')), 11);
    assert.ok(sent.length >= 5);
    for (const raw of sent) await check(rx, raw, { proto: true });
  });

  it('unusual but valid XML, split across TLS records at arbitrary byte positions, reaches every receiver intact', async () => {
    const rx = await receivers();
    const tx = await xmlClient(A, 'fid-sender-2');
    const events = unusual();
    const unconvertible0 = await A.metric('cot_events_dropped_total', { reason: 'unconvertible' });
    // whitespace and newlines between events, a declaration before some
    const wire = Buffer.from(events.map(([, x], i) => (i % 2 ? '\n\n  ' : '\r\n') + x).join(''));
    await sendSplit(tx, wire, 7);
    for (const [uid, raw] of events) await check(rx, raw, { proto: uid !== 'u-drawing' /* over 64 KiB */ });
    assert.equal(await A.metric('cot_events_dropped_total', { reason: 'unconvertible' }), unconvertible0);
  });

  it('events declared ISO-8859-1 / windows-1252 (older CoT writers) reach every receiver in UTF-8; the same bytes declared UTF-8 are refused', async () => {
    const rx = await receivers();
    const tx = await xmlClient(A, 'fid-sender-latin1');
    const ev = (uid: string, callsign: string, remarks: string) =>
      `<event version="2.0" uid="${uid}" type="a-f-G-U-C" time="${NOW}" start="${NOW}" stale="${LATER}" how="h-e"><point lat="48.85" lon="2.35" hae="35.0" ce="9.9" le="9.9"/><detail><contact callsign="${callsign}" endpoint="*:-1:stcp"/><remarks>${remarks}</remarks></detail></event>`;
    const malformed0 = await A.metric('cot_events_dropped_total', { reason: 'malformed' });
    // as such writers send it: the declaration and the event in one write (one TLS record)
    const first = ev('u-latin1', 'José', 'Café à 5 € — «Zoë»');
    tx.sock.write(Buffer.concat([Buffer.from(`<?xml version="1.0" encoding="ISO-8859-1"?>\n`), Buffer.from(first, 'latin1').map((c, i) => first.charCodeAt(i) === 0x20ac ? 0x80 : first.charCodeAt(i) === 0x2014 ? 0x97 : c)]));
    await check(rx, first, { proto: true });
    // the next one cut across TLS records: the stream's declaration still holds
    const second = ev('u-latin1-2', 'Jürgen', 'Straße');
    await sendSplit(tx, Buffer.concat([Buffer.from(`<?xml version='1.0' encoding='windows-1252'?>`), Buffer.from(second, 'latin1')]), 3);
    await check(rx, second, { proto: true });
    // declared UTF-8, the same kind of bytes are what they look like: not UTF-8
    tx.sock.write(Buffer.concat([Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>`), Buffer.from(ev('u-notutf8', 'Noël', 'x'), 'latin1')]));
    const deadline = Date.now() + 5000;
    while (await A.metric('cot_events_dropped_total', { reason: 'malformed' }) === malformed0 && Date.now() < deadline) await sleep(20);
    assert.equal(await A.metric('cot_events_dropped_total', { reason: 'malformed' }), malformed0 + 1, 'refused as invalid UTF-8');
    await sleep(200);
    assert.ok(!rx.xa.frames.some((f) => f.includes('u-notutf8')));
  });

  it('the reverse: every sample sent as protobuf (mapped as ATAK maps it) reaches XML, node-tak and protobuf clients with its meaning', async () => {
    const rx = await receivers();
    const tx = await protoClient(A, 'fid-sender-pb');
    const sent: string[] = [];
    for (const [, b] of loadSamples()) {
      const raw = b.toString('utf8').replaceAll("'TIME'", `'${NOW}'`);
      if (/type=["']t-x-(c-t|takp-)/.test(raw)) continue;
      tx.sock.write(streamFrame(encodeTakMessage(Buffer.from(raw))));
      sent.push(raw);
    }
    for (const raw of sent) {
      const uid = uidOf(raw.slice(raw.indexOf('<event')));
      const meaning = protoMeaning(normCot(expectedXml(raw)));
      for (const c of [rx.xa, rx.xb]) {
        await c.waitFor((f) => f.some((e) => uidOf(e) === uid), 10000, `${uid} at an XML client`);
        const got = c.frames.filter((e) => uidOf(e) === uid);
        assert.equal(got.length, 1, `${uid} once`);
        assert.deepEqual(normCot(got[0]!), meaning, `${uid}: the XML made from the protobuf`);
        assert.ok(!got[0]!.includes('<marti'), 'no <marti>');
      }
      for (const c of [rx.pa, rx.pb]) {
        const got = () => c.messages.map((m) => atakToXml(m)).filter((e) => uidOf(e) === uid);
        await c.waitFor(() => got().length > 0, 10000, `${uid} at a protobuf client`);
        assert.equal(got().length, 1);
        assert.deepEqual(normCot(got()[0]!), meaning, `${uid}: what an ATAK rebuilds`);
      }
      const deadline = Date.now() + 10000;
      while (!rx.nt.some((x) => x.raw.event._attributes.uid === uid) && Date.now() < deadline) await sleep(20);
      assert.equal(rx.nt.filter((x) => x.raw.event._attributes.uid === uid).length, 1, `${uid} at node-tak`);
    }
  });

  it('an event TAK Protocol cannot carry (no point, lat not a number) reaches XML clients, never protobuf ones as 0,0/NaN: counted unconvertible', async () => {
    const rx = await receivers();
    const tx = await xmlClient(A, 'fid-sender-3');
    const before = await A.metric('cot_events_dropped_total', { reason: 'unconvertible' }) + await B.metric('cot_events_dropped_total', { reason: 'unconvertible' });
    const bad = [
      `<event version="2.0" uid="u-nopoint" type="b-m-p-s-m" time="${NOW}" start="${NOW}" stale="${LATER}" how="h-e"><detail><remarks>no point</remarks></detail></event>`,
      `<event version="2.0" uid="u-nan" type="b-m-p-s-m" time="${NOW}" start="${NOW}" stale="${LATER}" how="h-e"><point lat="abc" lon="" hae="0" ce="0" le="0"/><detail/></event>`,
    ];
    tx.send(bad.join('\n'));
    for (const raw of bad) {
      for (const c of [rx.xa, rx.xb]) await c.waitFor((f) => f.some((e) => uidOf(e) === uidOf(raw)), 10000, uidOf(raw));
      assert.deepEqual(rx.xa.frames.filter((e) => uidOf(e) === uidOf(raw)), [raw]);
      assert.deepEqual(rx.xb.frames.filter((e) => uidOf(e) === uidOf(raw)), [raw]);
    }
    // a marker after them still reaches the protobuf clients: nothing else was lost
    const after = `<event version="2.0" uid="u-after" type="b-m-p-s-m" time="${NOW}" start="${NOW}" stale="${LATER}" how="h-e"><point lat="1" lon="2" hae="3" ce="4" le="5"/><detail/></event>`;
    tx.send(after);
    for (const c of [rx.pa, rx.pb]) await c.waitFor((f) => f.some((e) => e.includes('u-after')), 10000, 'the next event');
    for (const c of [rx.pa, rx.pb]) assert.ok(!c.frames.some((e) => e.includes('u-nopoint') || e.includes('u-nan')), 'never a fabricated point');
    const counted = await A.metric('cot_events_dropped_total', { reason: 'unconvertible' }) + await B.metric('cot_events_dropped_total', { reason: 'unconvertible' });
    assert.equal(counted - before, 4, 'two events, two protobuf clients');
    assert.ok(A.logs.some((l) => l.msg?.toString().includes('TAK protocol cannot carry it')), 'logged');
  });

  it('the same from a protobuf sender (lat NaN, lon Infinity): no protobuf client gets it, on its node or another', async () => {
    const rx = await receivers();
    const tx = await protoClient(A, 'fid-sender-pb-nan');
    const before = await A.metric('cot_events_dropped_total', { reason: 'unconvertible' }) + await B.metric('cot_events_dropped_total', { reason: 'unconvertible' });
    const ms = Date.now();
    const msg = upstream.encode(upstream.fromObject({
      cotEvent: { type: 'b-m-p-s-m', uid: 'u-pb-nan', how: 'h-e', sendTime: ms, startTime: ms, staleTime: ms + 3_600_000, lat: NaN, lon: Infinity, hae: -Infinity, ce: 9999999, le: 9999999 },
    })).finish();
    tx.sock.write(streamFrame(msg));
    // XML clients get what the protobuf decodes to, as from an XML sender with such a point
    for (const c of [rx.xa, rx.xb]) await c.waitFor((f) => f.some((e) => e.includes('u-pb-nan')), 10000, 'the event at an XML client');
    tx.send(`<event version="2.0" uid="u-pb-after" type="b-m-p-s-m" time="${NOW}" start="${NOW}" stale="${LATER}" how="h-e"><point lat="1" lon="2" hae="3" ce="4" le="5"/><detail/></event>`);
    for (const c of [rx.pa, rx.pb]) await c.waitFor((f) => f.some((e) => e.includes('u-pb-after')), 10000, 'the next event');
    for (const c of [rx.pa, rx.pb]) assert.ok(!c.frames.some((e) => e.includes('u-pb-nan')), 'never forwarded as it came');
    const counted = await A.metric('cot_events_dropped_total', { reason: 'unconvertible' }) + await B.metric('cot_events_dropped_total', { reason: 'unconvertible' });
    assert.equal(counted - before, 2, 'one event, two protobuf clients');
  });
});

/** The meaning an event keeps through TAK Protocol: <event version> and attributes of <point>
 *  other than the five, missing hae/ce/le as 9999999 (see README "TAK Protocol"). */
function protoMeaning(m: Obj): Obj {
  const out = { ...m };
  const p = { ...(out.point as Obj) };
  for (const k of Object.keys(p)) if (!['@_lat', '@_lon', '@_hae', '@_ce', '@_le'].includes(k)) delete p[k];
  for (const k of ['@_hae', '@_ce', '@_le']) if (p[k] === undefined) p[k] = 9999999;
  out.point = p;
  return out;
}
