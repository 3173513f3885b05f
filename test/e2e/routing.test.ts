// Issue 6: TAK routing semantics over real mutual TLS — directed delivery, <marti> stripping,
// latest-SA replay, disconnect notices, identity rules and hostile input.
//
// "X did not receive E" is proven without sleeping: after E the sender broadcasts a sentinel, and
// events from one sender reach a recipient in order, so once X has the sentinel it would have had E.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SharedPki } from '../helpers/pki.ts';
import type { TestServer } from '../helpers/server.ts';
import { ANNOUNCE, chatEv, e2eServer } from '../helpers/e2e.ts';
import { CotClient, sa, ping, sleep } from '../helpers/client.ts';
import { SAMPLES_DIR } from '../helpers/samples.ts';
import { scan } from '../../protocol/scan.ts';

function dests(...d: Array<[ 'callsign' | 'uid', string ]>): string {
  return '<marti>' + d.map(([k, v]) => `<dest ${k}="${v}"/>`).join('') + '</marti>';
}

const has = (c: CotClient, needle: string): number => c.frames.filter((f) => f.includes(needle)).length;

describe('e2e: TAK routing semantics', function () {
  this.timeout(30000);
  let pki: SharedPki;
  let srv: TestServer;
  const e = e2eServer();
  const { connect, sentinel } = e;
  before(function () { ({ pki, srv } = e); });

  /** Connect and identify with an SA; waits until every `peers` client has seen that SA. */
  async function identified(name: string, uid: string, callsign: string, peers: CotClient[] = [], opts: Parameters<typeof sa>[2] = {}): Promise<CotClient> {
    const c = await connect(name);
    c.send(sa(uid, callsign, opts));
    for (const p of peers) await p.waitFor((f) => f.some((x) => x.includes(`uid="${uid}"`)), 5000, `${uid} SA at a peer`);
    return c;
  }

  describe('directed delivery', () => {
    let a: CotClient, b: CotClient, c: CotClient;
    beforeEach(async () => {
      a = await identified('alpha', 'uid-A', 'ALPHA');
      b = await identified('bravo', 'uid-B', 'BRAVO', [a]);
      c = await identified('charlie', 'uid-C', 'CHARLIE', [a, b]);
    });

    it('dest callsign reaches only that client, without <marti>, everything else byte for byte', async () => {
      const ev = chatEv('to-bravo', dests(['callsign', 'BRAVO']));
      a.send(ev);
      await sentinel(a, [b, c]);
      assert.equal(has(b, '>to-bravo<'), 1);
      assert.equal(has(c, '>to-bravo<'), 0, 'charlie got a message for bravo');
      assert.equal(has(a, '>to-bravo<'), 0, 'the sender got its own message');
      const got = b.frames.find((f) => f.includes('>to-bravo<'))!;
      assert.equal(got, ev.replace(/<marti>.*<\/marti>/, ''));
    });

    it('dest uid (iTAK) reaches only that client', async () => {
      a.send(chatEv('to-uid-C', dests(['uid', 'uid-C'])));
      await sentinel(a, [b, c]);
      assert.equal(has(c, '>to-uid-C<'), 1);
      assert.equal(has(b, '>to-uid-C<'), 0);
      assert.ok(!c.frames.find((f) => f.includes('>to-uid-C<'))!.includes('<marti'));
    });

    it('two dests reach both, once each; a recipient named twice gets it once', async () => {
      a.send(chatEv('two', dests(['callsign', 'BRAVO'], ['uid', 'uid-C'])));
      a.send(chatEv('twice', dests(['callsign', 'BRAVO'], ['uid', 'uid-B'], ['callsign', 'BRAVO'])));
      const many: Array<['callsign' | 'uid', string]> = [];
      for (let i = 0; i < 5000; i++) many.push(['uid', 'uid-B'], ['callsign', 'CHARLIE'], ['callsign', `X${i}`]);
      a.send(chatEv('many', dests(...many)));
      await sentinel(a, [b, c]);
      assert.equal(has(b, '>many<'), 1);
      assert.equal(has(c, '>many<'), 1);
      assert.equal(has(b, '>two<'), 1);
      assert.equal(has(c, '>two<'), 1);
      assert.equal(has(b, '>twice<'), 1);
      assert.equal(has(c, '>twice<'), 0);
      assert.equal(has(a, '>two<') + has(a, '>twice<'), 0);
    });

    it('"All Streaming", an empty <marti/> and no marti reach everyone but the sender, without <marti>', async () => {
      a.send(chatEv('all-streaming', dests(['callsign', 'All Streaming'])));
      a.send(chatEv('empty-marti', '<marti/>'));
      a.send(chatEv('empty-marti-2', '<marti></marti>'));
      a.send(chatEv('all-and-bravo', dests(['callsign', 'BRAVO'], ['callsign', 'All Streaming'])));
      a.send(chatEv('no-marti'));
      await sentinel(a, [b, c]);
      for (const tag of ['all-streaming', 'empty-marti', 'empty-marti-2', 'all-and-bravo', 'no-marti']) {
        assert.equal(has(b, `>${tag}<`), 1, `${tag} at bravo`);
        assert.equal(has(c, `>${tag}<`), 1, `${tag} at charlie`);
        assert.equal(has(a, `>${tag}<`), 0, `${tag} back at the sender`);
      }
      assert.equal(b.frames.filter((f) => f.includes('<marti')).length, 0, 'a recipient saw <marti>');
    });

    it('a dest naming nobody (unknown callsign, empty callsign, no attribute, only a mission) reaches nobody', async () => {
      a.send(chatEv('unknown', dests(['callsign', 'NOBODY'])));
      a.send(chatEv('empty-cs', dests(['callsign', ''])));
      a.send(chatEv('bare-dest', '<marti><dest/></marti>'));
      a.send(chatEv('mission', '<marti><dest mission="Op Falcon"/></marti>'));
      await sentinel(a, [b, c]);
      for (const tag of ['unknown', 'empty-cs', 'bare-dest', 'mission']) assert.equal(has(b, `>${tag}<`) + has(c, `>${tag}<`), 0, tag);
    });

    it('a real ATAK GeoChat (indented <marti>) reaches only its dest, the rest byte for byte', async () => {
      const sample = readFileSync(join(SAMPLES_DIR, '03-geochat-direct-atak-to-wintak.xml'), 'utf8').replace('callsign="HUMMER"', 'callsign="CHARLIE"');
      a.send(sample);
      await sentinel(a, [b, c]);
      const got = c.frames.find((f) => f.includes('Roger'));
      assert.ok(got, 'charlie did not get the chat');
      const ev = sample.slice(sample.indexOf('<event')).trimEnd();
      assert.equal(got, ev.replace(/<marti>[\s\S]*<\/marti>/, ''));
      assert.equal(has(b, 'Roger'), 0);
    });

    it('every <marti> element is removed and all their dests count', async () => {
      a.send(chatEv('two-martis', dests(['callsign', 'BRAVO']) + '<x/>' + dests(['uid', 'uid-C'])));
      await sentinel(a, [b, c]);
      for (const x of [b, c]) {
        const got = x.frames.find((f) => f.includes('>two-martis<'));
        assert.ok(got, 'a named recipient did not get it');
        assert.ok(!got.includes('<marti'), `<marti> leaked: ${got}`);
        assert.ok(got.includes('</remarks><x/></detail>'));
      }
    });

    it('directed delivery follows a callsign change; the newcomer gets the renamed SA', async () => {
      b.send(sa('uid-B', 'BRAVO-2', { type: 'a-f-G-U-C-I' }));
      await a.waitFor((f) => f.some((x) => x.includes('callsign="BRAVO-2"')), 5000, 'renamed SA');
      a.send(chatEv('old-name', dests(['callsign', 'BRAVO'])));
      a.send(chatEv('new-name', dests(['callsign', 'BRAVO-2'])));
      await sentinel(a, [b, c]);
      assert.equal(has(b, '>old-name<'), 0);
      assert.equal(has(b, '>new-name<'), 1);
      const d = await connect('delta');
      const bravoSas = d.frames.filter((f) => f.includes('uid="uid-B"'));
      assert.equal(bravoSas.length, 1);
      assert.ok(bravoSas[0].includes('callsign="BRAVO-2"'));
    });
  });

  describe('latest-SA replay and disconnect notice', () => {
    it('a newcomer gets each connected client\'s latest non-stale SA before anything else, then the announcement', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      a.send(sa('uid-A', 'ALPHA', { lat: 11 }));
      const b = await identified('bravo', 'uid-B', 'BRAVO', [a]);
      // a short-lived SA that will be stale when the newcomer arrives
      const c = await identified('charlie', 'uid-C', 'CHARLIE', [a, b], { staleSec: 1 });
      // a client that leaves again: its SA must not be replayed
      const d = await identified('delta', 'uid-D', 'DELTA', [a, b]);
      d.close();
      await a.waitFor((f) => f.some((x) => x.includes('type="t-x-d-d"') && x.includes('uid="uid-D"')), 5000, 'delete of delta');
      b.send(sa('uid-B', 'BRAVO', { lat: 22 }));
      await a.waitFor((f) => f.some((x) => x.includes('uid="uid-B"') && x.includes('lat="22"')), 5000, 'second bravo SA');
      await sleep(1100); // charlie's SA goes stale
      const n = await connect('echo');
      const before = n.frames.slice(0, n.frames.findIndex((f) => f.includes(ANNOUNCE)));
      assert.equal(before.length, 2, `expected the SAs of alpha and bravo first, got:\n${n.frames.join('\n')}`);
      const byUid = new Map(before.map((f) => [/uid="([^"]+)"/.exec(f)![1], f]));
      assert.match(byUid.get('uid-A') ?? '', /lat="11"/, 'not alpha\'s latest SA');
      assert.match(byUid.get('uid-B') ?? '', /lat="22"/, 'not bravo\'s latest SA');
      assert.equal(n.frames.filter((f) => /uid="uid-[CD]"/.test(f)).length, 0, 'a stale or departed SA was replayed');
      c.close();
    });

    it('the others get a t-x-d-d naming the uid and last SA type, stale +20 s, no __forcedelete', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const b = await identified('bravo', 'uid-B', 'BRAVO', [a]);
      const c = await identified('charlie', 'uid-C', 'CHARLIE', [a, b]);
      b.send(sa('uid-B', 'BRAVO', { type: 'a-f-G-E-V-C' }));
      await a.waitFor((f) => f.some((x) => x.includes('a-f-G-E-V-C')));
      b.close();
      for (const x of [a, c]) {
        await x.waitFor((f) => f.some((y) => y.includes('type="t-x-d-d"')), 5000, 'disconnect notice');
        const notes = x.frames.filter((y) => y.includes('type="t-x-d-d"'));
        assert.equal(notes.length, 1);
        const note = notes[0];
        assert.match(note, /<link uid="uid-B" relation="p-p" type="a-f-G-E-V-C"\/>/);
        assert.ok(!note.includes('__forcedelete'));
        const h = scan(Buffer.from(note));
        assert.ok(h.ok);
        const m = /time="([^"]+)"[^>]*stale="([^"]+)"/.exec(note)!;
        assert.equal(Date.parse(m[2]) - Date.parse(m[1]), 20000);
        assert.ok(Math.abs(Date.parse(m[1]) - Date.now()) < 5000);
      }
    });

    it('no notice for a client that never identified; one per identified client', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const anon = await connect('bravo');
      anon.send(chatEv('anon-chat'));
      await a.waitFor((f) => f.some((x) => x.includes('>anon-chat<')));
      anon.close();
      const b = await identified('charlie', 'uid-C', 'CHARLIE', [a]);
      b.close();
      await a.waitFor((f) => f.some((x) => x.includes('type="t-x-d-d"')), 5000, 'notice for charlie');
      await sleep(100);
      const notes = a.frames.filter((x) => x.includes('type="t-x-d-d"'));
      assert.equal(notes.length, 1);
      assert.match(notes[0], /link uid="uid-C"/);
    });
  });

  describe('identity', () => {
    it('pings never name a session, even with a contact endpoint; the first SA does', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const p = await connect('bravo');
      p.send(ping('random-ping-uid'));
      const t = new Date().toISOString();
      p.send(`<event version="2.0" uid="ping-with-contact" type="t-x-c-t" time="${t}" start="${t}" stale="${t}" how="m-g"><point lat="0" lon="0" hae="0" ce="1" le="1"/><detail><contact endpoint="*:-1:stcp" callsign="PINGER"/></detail></event>`);
      await p.waitFor((f) => f.filter((x) => x.includes('t-x-c-t-r')).length === 2, 5000, 'two pongs');
      p.send(sa('uid-P', 'PEE'));
      await a.waitFor((f) => f.some((x) => x.includes('uid="uid-P"')));
      a.send(chatEv('to-ping-uid', dests(['uid', 'random-ping-uid'])));
      a.send(chatEv('to-pinger', dests(['callsign', 'PINGER'])));
      a.send(chatEv('to-p', dests(['uid', 'uid-P'])));
      await sentinel(a, [p]);
      assert.equal(has(p, '>to-ping-uid<') + has(p, '>to-pinger<'), 0);
      assert.equal(has(p, '>to-p<'), 1);
      assert.equal(has(a, 't-x-c-t'), 0, 'a ping or pong was forwarded');
      assert.ok(srv.logs.some((l) => l.audit === 'identified' && l.uid === 'uid-P'));
      assert.ok(!srv.logs.some((l) => l.audit === 'identified' && (l.uid === 'random-ping-uid' || l.uid === 'ping-with-contact')));
    });

    it('control types and the pytak hello are consumed, never forwarded', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const b = await connect('bravo');
      const t = new Date().toISOString();
      const ev = (uid: string, type: string, detail = '') => `<event version="2.0" uid="${uid}" type="${type}" time="${t}" start="${t}" stale="${t}" how="m-g"><point lat="0" lon="0" hae="0" ce="1" le="1"/><detail>${detail}</detail></event>`;
      a.send(ev('x1', 't-x-c-t-r'));
      a.send(ev('x2', 't-x-takp-q', '<TakControl><TakRequest><TakProtocolSupport version="1"/></TakRequest></TakControl>'));
      a.send(ev('x3', 't-x-takp-v'));
      a.send(ev('x4', 't-x-takp-r'));
      a.send(ev('takPing', 't-x-d-d'));
      a.send(ev('real-delete', 't-x-d-d', '<link uid="marker-1" relation="none" type="none"/><__forcedelete/>'));
      await sentinel(a, [b]);
      assert.equal(b.frames.filter((f) => /uid="x\d"|uid="takPing"/.test(f)).length, 0);
      assert.equal(has(b, 'uid="real-delete"'), 1, 'an ordinary delete must be forwarded');
    });

    it('a client claiming a connected client\'s uid with another certificate is refused; the cache and notices stay right', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const b = await identified('bravo', 'uid-B', 'BRAVO', [a]);
      const m = await connect('mallory');
      m.send(sa('uid-A', 'MALLORY', { lat: 66 }));
      m.send(chatEv('fake', '').replace(/uid="GeoChat[^"]*"/, 'uid="uid-A"'));
      await sentinel(m, [b]);
      assert.equal(b.frames.filter((f) => f.includes('MALLORY') || f.includes('>fake<')).length, 0, 'the impersonation was forwarded');
      b.send(chatEv('for-alpha', dests(['uid', 'uid-A'])));
      b.send(chatEv('for-mallory', dests(['callsign', 'MALLORY'])));
      await sentinel(b, [a, m]);
      assert.equal(has(a, '>for-alpha<'), 1);
      assert.equal(has(m, '>for-alpha<') + has(m, '>for-mallory<'), 0);
      m.close();
      const n = await connect('delta');
      const saA = n.frames.filter((f) => f.includes('uid="uid-A"'));
      assert.equal(saA.length, 1);
      assert.ok(saA[0].includes('callsign="ALPHA"'), 'the cached SA of alpha was replaced');
      await sentinel(b, [a, n]);
      assert.equal(a.frames.filter((f) => f.includes('type="t-x-d-d"')).length + b.frames.filter((f) => f.includes('type="t-x-d-d"')).length, 0, 'a delete went out for a client that is still there');
      assert.ok(srv.logs.some((l) => l.audit === 'uid_conflict' && l.uid === 'uid-A' && l.cn === 'mallory'));
      assert.ok(await srv.metric('cot_events_dropped_total', { reason: 'uid_conflict' }) >= 2);
    });

    it('the same certificate reconnecting under its uid takes over: the old connection is closed, no delete notice', async () => {
      const a1 = await identified('alpha', 'uid-A', 'ALPHA');
      const b = await identified('bravo', 'uid-B', 'BRAVO', [a1]);
      const closed0 = await srv.metric('cot_sessions_closed_total', { reason: 'replaced' });
      const a2 = await connect('alpha');
      a2.send(sa('uid-A', 'ALPHA', { lat: 44 }));
      await b.waitFor((f) => f.some((x) => x.includes('lat="44"')));
      // the device reconnected: its old connection (dead, in the field) is closed by the server
      await a1.waitClosed();
      assert.equal(await srv.metric('cot_sessions_closed_total', { reason: 'replaced' }), closed0 + 1);
      assert.ok(srv.logs.some((l) => l.audit === 'closed' && l.reason === 'replaced' && l.uid === 'uid-A'), 'closed line with reason replaced');
      b.send(chatEv('to-new-alpha', dests(['uid', 'uid-A'])));
      await sentinel(b, [a2]);
      assert.equal(has(a2, '>to-new-alpha<'), 1);
      assert.equal(has(b, 'type="t-x-d-d"'), 0, 'a delete went out although alpha is connected');
      a2.close();
      await b.waitFor((f) => f.some((x) => x.includes('type="t-x-d-d"') && x.includes('link uid="uid-A"')), 5000, 'delete after the last alpha left');
    });
  });

  describe('odd and hostile events', () => {
    it('no how, no point, stale in the past: routed; a stale SA is not cached and does not evict the good one', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const b = await identified('bravo', 'uid-B', 'BRAVO', [a]);
      const t = new Date().toISOString();
      a.send(`<event version="2.0" uid="no-how" type="a-u-G" time="${t}" start="${t}" stale="${t}"><point lat="1" lon="2" hae="0" ce="1" le="1"/><detail/></event>`);
      a.send(`<event version="2.0" uid="no-point" type="a-u-G" how="h-e" time="${t}" start="${t}" stale="${t}"><detail/></event>`);
      a.send(`<event uid="bare" type="a-u-G"/>`);
      const past = sa('uid-A', 'ALPHA', { staleSec: -60, lat: 55 });
      a.send(past);
      await sentinel(a, [b]);
      for (const u of ['no-how', 'no-point', 'bare']) assert.equal(has(b, `uid="${u}"`), 1, u);
      assert.equal(has(b, 'lat="55"'), 1, 'a stale SA is still routed');
      const n = await connect('charlie');
      const saA = n.frames.filter((f) => f.includes('uid="uid-A"'));
      assert.equal(saA.length, 1, 'alpha\'s good SA left the cache');
      assert.ok(!saA[0].includes('lat="55"'));
    });

    it('an SA directed at one client reaches only it and is never replayed to newcomers', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const b = await identified('bravo', 'uid-B', 'BRAVO', [a]);
      const c = await identified('charlie', 'uid-C', 'CHARLIE', [a, b]);
      a.send(sa('uid-A', 'ALPHA', { lat: 77 }).replace('</detail>', `${dests(['callsign', 'BRAVO'])}</detail>`));
      await sentinel(a, [b, c]);
      assert.equal(has(b, 'lat="77"'), 1);
      assert.equal(has(c, 'lat="77"'), 0);
      const n = await connect('delta');
      const saA = n.frames.filter((f) => f.includes('uid="uid-A"'));
      assert.equal(saA.length, 1);
      assert.ok(!saA[0].includes('lat="77"'), 'a directed SA was replayed to a newcomer');
    });

    it('a callsign and uid full of entities: identity, directed delivery and the notice all work', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const uid = 'ent&amp;&lt;&quot;&#x27;&#65;';
      const b = await connect('bravo');
      b.send(sa(uid, 'B&amp;&lt;&gt;&#x1F600;&quot;'));
      await a.waitFor((f) => f.some((x) => x.includes(`uid="${uid}"`)));
      a.send(chatEv('to-ent-cs', dests(['callsign', 'B&#38;&#60;>\u{1F600}&#34;'])));
      a.send(chatEv('to-ent-uid', dests(['uid', 'ent&#38;<"\'A'.replace('<', '&lt;').replace('"', '&quot;')])));
      await sentinel(a, [b]);
      assert.equal(has(b, '>to-ent-cs<'), 1);
      assert.equal(has(b, '>to-ent-uid<'), 1);
      b.close();
      await a.waitFor((f) => f.some((x) => x.includes('type="t-x-d-d"')));
      const note = a.frames.find((x) => x.includes('type="t-x-d-d"'))!;
      const h = scan(Buffer.from(note));
      assert.ok(h.ok, 'the notice is not well-formed');
      assert.equal(h.linkUid, 'ent&<"\'A');
    });

    it('what recipients get cuts at "</event>" into exactly the events sent: no self-closing root, no spaced end tag, no end tag inside', async () => {
      // ATAK's commo, node-tak and pytak split the stream at the bytes "</event>" (CotClient does too)
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const b = await identified('bravo', 'uid-B', 'BRAVO', [a]);
      const m = await connect('mallory');
      const t = new Date().toISOString();
      const st = new Date(Date.now() + 60_000).toISOString();
      const head = (uid: string) => `<event version="2.0" uid="${uid}" type="b-m-p-s-m" time="${t}" start="${t}" stale="${st}" how="h-g-i-g-o"`;
      const body = '><point lat="1" lon="2" hae="0" ce="9" le="9"/><detail><remarks>r</remarks></detail>';
      // an SA of alpha's, hidden where a client cutting at "</event>" would find it
      const spoof = sa('uid-A', 'ALPHA', { lat: 66, type: 'a-h-G' }).replace(/^<\?xml[^>]*>/, '');
      const before = await srv.metric('cot_events_dropped_total', { reason: 'malformed' });
      const conflicts = await srv.metric('cot_events_dropped_total', { reason: 'uid_conflict' });
      m.send(`${head('self-closing')}/>\n`);
      m.send(`${head('spaced-end')}${body}</event >`);
      m.send(`${head('crlf-end')}${body}</event\r\n>`);
      m.send(`${head('in-cdata')}><point lat="1" lon="2" hae="0" ce="9" le="9"/><detail><remarks><![CDATA[x</event>${spoof}]]></remarks></detail></event>`);
      m.send(`${head('in-comment')}><point lat="1" lon="2" hae="0" ce="9" le="9"/><detail><!-- </event>${spoof} --></detail></event>`);
      m.send(`${head('in-pi')}><point lat="1" lon="2" hae="0" ce="9" le="9"/><detail><?x </event>${spoof}?></detail></event>`);
      m.send(`${head('after')}${body}</event>`);
      await sentinel(m, [a, b]);
      for (const c of [a, b]) {
        const got = c.cot().filter((f) => !f.includes('sentinel') && !/uid="uid-[AB]" type="a-f-G-U-C"/.test(f));
        assert.deepEqual(got.map((f) => { const h = scan(Buffer.from(f)); return h.ok ? h.uid : `not one event: ${f.slice(0, 300)}`; }),
          ['self-closing', 'spaced-end', 'crlf-end', 'after']);
        assert.ok(!c.frames.some((f) => f.includes('type="a-h-G"')), 'the hidden SA of alpha reached a client');
      }
      // each event with "</event>" inside markup is refused there (the framer cuts where the clients
      // would); what follows it up to its own "</event>" is another event, alpha's uid here:
      // refused as uid_conflict, since mallory's certificate does not own it
      assert.equal(await srv.metric('cot_events_dropped_total', { reason: 'malformed' }), before + 3);
      assert.equal(await srv.metric('cot_events_dropped_total', { reason: 'uid_conflict' }), conflicts + 3);
      const lines = srv.logs.filter((l) => l.audit === 'bad_input' && l.cn === 'mallory');
      assert.equal(lines.length, 1, JSON.stringify(lines));
      assert.equal(lines[0].detail, '</event> inside a CDATA section');
    });

    it('malformed input is counted and dropped; the session and the server keep working', async () => {
      const a = await identified('alpha', 'uid-A', 'ALPHA');
      const b = await identified('bravo', 'uid-B', 'BRAVO', [a]);
      const before = await srv.metric('cot_events_dropped_total', { reason: 'malformed' });
      a.send('<event uid="x" type="a"><detail><marti></detail></event>');
      a.send('<event uid="y"><point/></event>');
      a.send('<event uid="z" type="a" stale="&bogus;"/>');
      await sentinel(a, [b]);
      assert.equal(b.frames.filter((f) => /uid="[xyz]"/.test(f)).length, 0);
      assert.equal(await srv.metric('cot_events_dropped_total', { reason: 'malformed' }), before + 3);
      assert.equal(srv.logs.filter((l) => l.audit === 'bad_input' && l.kind === 'malformed' && l.cn === 'alpha').length >= 1, true);
    });
  });
});
