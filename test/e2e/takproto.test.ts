// Issue 10: TAK Protocol v1 negotiated per connection, XML and protobuf clients on one server.
// Real mutual TLS; the protobuf side is encoded by node-cot and decoded by protobufjs.
import assert from 'node:assert/strict';
import { XMLParser } from 'fast-xml-parser';
import CoT from '@tak-ps/node-cot';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { CotClient, chat, ping, sa, sleep } from '../helpers/client.ts';
import { TakClient, takRequest } from '../helpers/takclient.ts';
import { streamFrame, upstream } from '../helpers/pbjs.ts';
import { normCot } from '../helpers/cotnorm.ts';

const xmlParser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' });
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('e2e: TAK Protocol v1 (protobuf) negotiation and delivery', function () {
  let pki: SharedPki;
  let srv: TestServer;
  const open: Array<{ close(): void }> = [];
  const tak = async (name: string): Promise<TakClient> => {
    const c = await TakClient.connect(srv.port, await pki.client(name));
    open.push(c);
    return c;
  };
  const xml = async (name: string): Promise<CotClient> => {
    const c = await CotClient.connect(srv.port, await pki.client(name));
    open.push(c);
    return c;
  };

  before(async function () {
    this.timeout(60000);
    pki = await testPki();
    srv = await startTestServer(pki.dir, {});
  });
  afterEach(() => { while (open.length) open.pop()!.close(); });
  after(async () => { await srv?.stop(); });

  it('announces TAK protocol v1 once, as the spec describes', async () => {
    const c = await tak('alpha');
    await c.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')));
    await sleep(100);
    const ann = c.frames.filter((x) => x.includes('t-x-takp-v'));
    assert.equal(ann.length, 1);
    const ev = (xmlParser.parse(ann[0]) as Obj).event;
    assert.equal(ev.how, 'm-g');
    assert.match(ev.uid, /^[0-9a-f-]{36}$/);
    assert.equal(Date.parse(ev.stale) - Date.parse(ev.time), 60000);
    assert.equal(ev.start, ev.time);
    assert.deepEqual([ev.point.lat, ev.point.lon, ev.point.ce, ev.point.le].map(Number), [0, 0, 999999, 999999]);
    assert.equal(ev.detail.TakControl.TakProtocolSupport.version, '1');
    assert.equal(ev.detail.TakControl.TakServerVersionInfo.apiVersion, '3');
    assert.ok(ev.detail.TakControl.TakServerVersionInfo.serverVersion.length > 0);
  });

  it('a protobuf client and an XML client each receive the other\'s events in their own format; pings in both', async () => {
    const p = await tak('alpha');
    const { status, response } = await p.negotiate('1', 'proto-req-1');
    assert.equal(status, 'true');
    const r = (xmlParser.parse(response) as Obj).event;
    assert.equal(r.uid, 'proto-req-1', 'the response keeps the request uid');
    assert.equal(r.how, 'm-g');
    assert.equal(p.mode, 'protobuf');
    const x = await xml('bravo');
    await sleep(50);

    // XML -> protobuf
    const xsa = sa('uid-xml', 'XMLER');
    x.send(xsa);
    await p.waitFor((f) => f.some((s) => s.includes('uid="uid-xml"')), 5000, 'XML SA at the protobuf client');
    const msg = p.messages.find((m) => upstream.decode(m).toJSON().cotEvent?.uid === 'uid-xml')!;
    const obj = upstream.toObject(upstream.decode(msg), { longs: Number }) as Obj;
    assert.deepEqual(obj.cotEvent.detail.contact, { endpoint: '*:-1:stcp', callsign: 'XMLER' }, 'contact is a typed field');
    assert.deepEqual(obj.cotEvent.detail.group, { name: 'Cyan', role: 'Team Member' });
    assert.equal(obj.cotEvent.lat, 38.5);
    assert.deepEqual(normCot(p.frames.find((s) => s.includes('uid="uid-xml"'))!), normCot(xsa));

    // protobuf -> XML (node-cot made the bytes)
    const psa = sa('uid-proto', 'PROTOER', { lat: 12.25 });
    p.send(psa);
    await x.waitFor((f) => f.some((s) => s.includes('uid="uid-proto"')), 5000, 'protobuf SA at the XML client');
    const got = x.frames.find((s) => s.includes('uid="uid-proto"'))!;
    assert.deepEqual(normCot(got, { dropDetail: ['_flow-tags_', 'metadata'] }), normCot(psa));
    assert.ok(!got.includes('\u00bf'));

    // pings: protobuf in, protobuf pong out; XML in, XML pong out
    const pongsP = p.frames.filter((s) => s.includes('t-x-c-t-r')).length;
    p.send(ping('proto-ping'));
    await p.waitFor((f) => f.filter((s) => s.includes('t-x-c-t-r')).length > pongsP, 5000, 'a protobuf pong');
    assert.ok(p.messages.some((m) => upstream.decode(m).toJSON().cotEvent?.type === 't-x-c-t-r'));
    x.send(ping('xml-ping'));
    await x.waitFor((f) => f.some((s) => s.includes('t-x-c-t-r')), 5000, 'an XML pong');
    await sleep(100);
    assert.ok(!x.frames.some((s) => s.includes('proto-ping')) && !p.frames.some((s) => s.includes('xml-ping')), 'pings are never forwarded');
  });

  it('marti dest from a protobuf client reaches only the named XML client, without <marti>', async () => {
    const p = await tak('alpha');
    await p.negotiate();
    const x1 = await xml('bravo');
    const x2 = await xml('charlie');
    x1.send(sa('uid-x1', 'X-ONE'));
    x2.send(sa('uid-x2', 'X-TWO'));
    await p.waitFor((f) => f.some((s) => s.includes('uid-x1')) && f.some((s) => s.includes('uid-x2')));
    // node-cot validates GeoChat: it wants a <chatgrp>
    p.send(chat('proto', 'hello one', [{ callsign: 'X-ONE' }]).replace('senderCallsign="x" chatroom="y"/>', 'chatroom="y" id="uid-x1" senderCallsign="PROTO"><chatgrp uid0="proto" uid1="uid-x1" id="uid-x1"/></__chat>'));
    await x1.waitFor((f) => f.some((s) => s.includes('hello one')), 5000, 'the directed chat');
    await sleep(200);
    assert.ok(!x2.frames.some((s) => s.includes('hello one')));
    assert.ok(!x1.frames.find((s) => s.includes('hello one'))!.includes('<marti'));
  });

  it('the protobuf stream written one byte at a time still decodes; several messages per write too', async () => {
    const p = await tak('alpha');
    await p.negotiate();
    const x = await xml('bravo');
    await sleep(50);
    const one = p.encode(sa('bytewise-proto', 'BYTES'));
    p.sock.setNoDelay(true);
    for (let i = 0; i < one.length; i++) {
      p.sock.write(one.subarray(i, i + 1));
      if (i % 7 === 0) await sleep(1);
    }
    p.sock.write(Buffer.concat([1, 2, 3].map((i) => p.encode(sa(`batch-proto-${i}`, `B${i}`)))));
    await x.waitFor((f) => f.filter((s) => /uid="(bytewise-proto|batch-proto-\d)"/.test(s)).length === 4, 8000, 'four events');
  });

  it('a version it does not support gets status false and the client stays on XML', async () => {
    const p = await tak('alpha');
    const { status } = await p.negotiate('2');
    assert.equal(status, 'false');
    assert.equal(p.mode, 'xml');
    const x = await xml('bravo');
    await sleep(50);
    x.send(sa('uid-after-false', 'AF'));
    await p.waitFor((f) => f.some((s) => s.includes('uid="uid-after-false"')));
    p.send(sa('uid-xml-still', 'XS'));
    await x.waitFor((f) => f.some((s) => s.includes('uid="uid-xml-still"')));
  });

  it('a client repeating an unsupported request gets every answer, but one log line; its version is clipped there', async () => {
    const p = await tak('charlie');
    await p.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'announcement');
    const long = 'v'.repeat(5000);
    for (let i = 0; i < 50; i++) p.sock.write(takRequest(`rq-${i}`, i === 0 ? long : '2'));
    await p.waitFor((f) => f.filter((x) => x.includes('t-x-takp-r') && x.includes('status="false"')).length === 50, 8000, 'fifty refusals');
    const lines = srv.logs.filter((l) => l.audit === 'protocol' && l.cn === 'charlie');
    assert.equal(lines.length, 1, 'one line, not one per request');
    assert.equal(lines[0]!.requested, `${'v'.repeat(32)}…`);
  });

  it('a client that never answers the announcement stays on XML', async () => {
    const quiet = await xml('alpha');
    const x = await xml('bravo');
    await quiet.waitFor((f) => f.some((s) => s.includes('t-x-takp-v')));
    await sleep(1500);
    x.send(sa('uid-late', 'LATE'));
    await quiet.waitFor((f) => f.some((s) => s.includes('uid="uid-late"')));
    quiet.send(ping('quiet-ping'));
    await quiet.waitFor((f) => f.some((s) => s.includes('t-x-c-t-r')));
    quiet.send(sa('uid-quiet', 'QUIET'));
    await x.waitFor((f) => f.some((s) => s.includes('uid="uid-quiet"')));
    // every byte it received is XML events
    assert.equal(quiet.bytes, Buffer.byteLength(quiet.frames.join('')));
  });

  it('request and first protobuf message in one write: the switch happens exactly after the request', async () => {
    const p = await tak('alpha');
    const x = await xml('bravo');
    await p.waitFor((f) => f.some((s) => s.includes('t-x-takp-v')));
    await sleep(50);
    const proto = streamFrame(new CoT(sa('uid-same-chunk', 'SC')).to_proto());
    p.sock.write(Buffer.concat([Buffer.from(takRequest('same-chunk') + '\n'), proto]));
    await x.waitFor((f) => f.some((s) => s.includes('uid="uid-same-chunk"')), 5000, 'the event after the request');
  });

  it('the disconnect notice and events over 64 KiB: protobuf clients get the one, never the other (counted)', async () => {
    const p = await tak('alpha');
    await p.negotiate();
    const x = await xml('bravo');
    const x2 = await xml('charlie');
    x.send(sa('uid-leaving', 'LEAVER'));
    await p.waitFor((f) => f.some((s) => s.includes('uid="uid-leaving"')));
    const before = await srv.metric('cot_events_dropped_total', { reason: 'oversize' });
    const big = chat('big', 'x'.repeat(70 * 1024));
    x.send(big);
    await x2.waitFor((f) => f.some((s) => s.length > 70 * 1024), 5000, 'the big event at the XML client');
    assert.equal(await srv.metric('cot_events_dropped_total', { reason: 'oversize' }), before + 1);
    assert.ok(srv.logs.some((l) => l.kind === 'oversize_out'));
    x.close();
    await p.waitFor((f) => f.some((s) => s.includes('t-x-d-d') && s.includes('uid-leaving')), 5000, 'the disconnect notice in protobuf');
    assert.ok(!p.frames.some((s) => s.length > 70 * 1024));
  });

  it('bad protobuf: an undecodable message is dropped (malformed), no magic byte closes the connection', async () => {
    const p = await tak('alpha');
    await p.negotiate();
    const x = await xml('bravo');
    await sleep(50);
    const before = await srv.metric('cot_events_dropped_total', { reason: 'malformed' });
    p.sock.write(Buffer.concat([streamFrame(Buffer.from([0x12, 0x05, 0x0a])), p.encode(sa('uid-after-bad', 'AB'))]));
    await x.waitFor((f) => f.some((s) => s.includes('uid="uid-after-bad"')), 5000, 'the event after the bad one');
    assert.equal(await srv.metric('cot_events_dropped_total', { reason: 'malformed' }), before + 1);
    p.sock.write(Buffer.from(sa('xml-on-a-protobuf-stream', 'NOPE')));
    await p.waitClosed();
    await sleep(100);
    assert.ok(!x.frames.some((s) => s.includes('xml-on-a-protobuf-stream')));
    assert.equal(await srv.metric('cot_events_dropped_total', { reason: 'malformed' }), before + 2);
    assert.ok(srv.logs.some((l) => l.audit === 'closed' && l.reason === 'protocol'));
  });

  it('a control-only TakMessage is ignored without harm', async () => {
    const p = await tak('alpha');
    await p.negotiate();
    p.sock.write(streamFrame(upstream.encode(upstream.fromObject({ takControl: { minProtoVersion: 1, maxProtoVersion: 1 } })).finish()));
    p.send(ping('after-control'));
    await p.waitFor((f) => f.some((s) => s.includes('t-x-c-t-r')));
    assert.equal(p.closed, false);
  });
});
