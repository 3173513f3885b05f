import assert from 'node:assert/strict';
import { envelopeProto, frameProto, setInbound, TOO_BIG, UNCONVERTIBLE } from '../../src/wire.ts';
import { EnvelopeKind, type Envelope } from '../../src/bus/types.ts';
import { pong } from '../../protocol/control.ts';
import { decodeTakMessage, encodeTakMessage, TAK_MAGIC } from '../../protocol/takproto.ts';
import { sa } from '../helpers/client.ts';
import { normCot } from '../helpers/cotnorm.ts';

const env = (frame: Buffer): Envelope => ({
  kind: EnvelopeKind.event, node: 'n', session: 1, seq: 1, uid: 'u', type: 't', staleMs: NaN, callsigns: null, uids: null, frame, t0: 0,
});

describe('wire formats: each event encoded at most once per format', () => {
  it('an envelope is encoded to protobuf on its first protobuf recipient, then shared', () => {
    const xml = sa('uid-w', 'W');
    const e = env(Buffer.from(xml));
    assert.equal(e.proto, undefined);
    const a = envelopeProto(e)!;
    assert.equal(a[0], TAK_MAGIC);
    assert.equal(envelopeProto(e), a, 'the same Buffer for every recipient');
    assert.ok(a[1] >= 0x80 && a[2] < 0x80, 'a two-byte length');
    assert.deepEqual(normCot(decodeTakMessage(a.subarray(3))!), normCot(xml));
  });

  it('an event too large for ATAK is refused once (TOO_BIG), not re-encoded per recipient', () => {
    const e = env(Buffer.from(`<event uid="u" type="t"><point lat="1" lon="2" hae="0" ce="0" le="0"/><detail><remarks>${'x'.repeat(70000)}</remarks></detail></event>`));
    assert.equal(envelopeProto(e), TOO_BIG);
    assert.equal(e.proto?.length, 0);
    assert.equal(envelopeProto(e), TOO_BIG);
  });

  it('an event without a numeric <point> is refused once (UNCONVERTIBLE), told apart from one too large', () => {
    for (const point of ['', '<point lat="abc" lon="2" hae="0" ce="0" le="0"/>', '<point lon="2"/>']) {
      const e = env(Buffer.from(`<event uid="u" type="t">${point}<detail/></event>`));
      assert.equal(envelopeProto(e), UNCONVERTIBLE, point);
      assert.equal(envelopeProto(e), UNCONVERTIBLE, point);
      assert.equal(frameProto(e.frame), UNCONVERTIBLE, point);
    }
  });

  it('server-made frames (pong) are encoded once per Buffer', () => {
    const p = pong();
    const a = frameProto(p)!;
    assert.equal(frameProto(p), a);
    assert.ok(a[1] < 0x80, 'a one-byte length');
    assert.match(decodeTakMessage(a.subarray(2))!.toString(), /type="t-x-c-t-r"/);
  });

  it('an event that arrived as protobuf and goes out unchanged is forwarded as the sender wrote it', () => {
    // a message with a field we do not know (99): re-encoding would drop it, forwarding keeps it
    const own = Buffer.concat([encodeTakMessage(Buffer.from(sa('uid-in', 'IN'))), Buffer.from([0x98, 0x06, 0x01])]);
    const xml = decodeTakMessage(own)!;
    const copy = Buffer.from(xml); // what the router publishes when it strips nothing
    setInbound(7, xml, own);
    try {
      const same = envelopeProto({ ...env(copy), session: 7 })!;
      assert.deepEqual(same.subarray(3), own);
      // another session's envelope, or a changed frame (marti stripped), is encoded from its XML
      assert.notDeepEqual(envelopeProto({ ...env(Buffer.from(copy)), session: 8 })!.subarray(3), own);
      const stripped = Buffer.from(copy.toString().replace('<takv', '<takv x="1"'));
      assert.notDeepEqual(envelopeProto({ ...env(stripped), session: 7 })!.subarray(3), own);
    } finally {
      setInbound(0, null, null);
    }
    assert.notDeepEqual(envelopeProto({ ...env(Buffer.from(copy)), session: 7 })!.subarray(3), own, 'only while it is routed');
    // the forwarded bytes are a copy: the framer reuses its buffers
    setInbound(7, xml, own);
    const kept = envelopeProto({ ...env(copy), session: 7 })!;
    setInbound(0, null, null);
    const snapshot = Buffer.from(kept);
    own.fill(0);
    assert.deepEqual(kept, snapshot);
  });
});
