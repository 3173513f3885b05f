import assert from 'node:assert/strict';
import { envelopeProto, frameProto } from '../../src/wire.ts';
import { EnvelopeKind, type Envelope } from '../../src/bus/types.ts';
import { pong } from '../../protocol/control.ts';
import { decodeTakMessage, TAK_MAGIC } from '../../protocol/takproto.ts';
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

  it('an event too large for ATAK is refused once (null), not re-encoded per recipient', () => {
    const e = env(Buffer.from(`<event uid="u" type="t"><detail><remarks>${'x'.repeat(70000)}</remarks></detail></event>`));
    assert.equal(envelopeProto(e), null);
    assert.equal(e.proto?.length, 0);
    assert.equal(envelopeProto(e), null);
  });

  it('server-made frames (pong) are encoded once per Buffer', () => {
    const p = pong();
    const a = frameProto(p)!;
    assert.equal(frameProto(p), a);
    assert.ok(a[1] < 0x80, 'a one-byte length');
    assert.match(decodeTakMessage(a.subarray(2))!.toString(), /type="t-x-c-t-r"/);
  });
});
