import assert from 'node:assert/strict';
import { canonicalSerial, colonSerial, serialToBigInt } from '../../src/auth/serial.ts';

describe('canonicalSerial', () => {
  it('lower-cases hex and strips leading zeros and colons', () => {
    assert.equal(canonicalSerial('00A1B2'), 'a1b2');
    assert.equal(canonicalSerial('0x00ff'), 'ff');
    assert.equal(canonicalSerial('00:A1:b2'), 'a1b2');
    assert.equal(canonicalSerial('1:2:3'), '10203'); // openssl omits nothing, but single digits pad per byte
    assert.equal(canonicalSerial('  7F  '), '7f');
    assert.equal(canonicalSerial('0000'), '0');
  });

  it('treats numbers and bigints as integer values (decimal in JSON)', () => {
    assert.equal(canonicalSerial(255), 'ff');
    assert.equal(canonicalSerial(0), '0');
    // 160-bit serial, far above 2^53: exact
    const big = 1461501637330902918203684832716283019655932542975n; // 2^160 - 1
    assert.equal(canonicalSerial(big), 'f'.repeat(40));
    assert.equal(serialToBigInt(canonicalSerial(big)), big);
  });

  it('refuses garbage and lossy numbers', () => {
    for (const bad of ['', '  ', 'xyz', '12g4', 'a::b', ':ab', 'abc:', '123:4', '-5', '0x', 'f'.repeat(65)]) {
      assert.throws(() => canonicalSerial(bad), /invalid serial/, JSON.stringify(bad));
    }
    assert.throws(() => canonicalSerial(-1), /invalid serial/);
    assert.throws(() => canonicalSerial(1.5), /invalid serial/);
    assert.throws(() => canonicalSerial(2 ** 60), /invalid serial/); // not a safe integer: digits already lost
    assert.throws(() => canonicalSerial(-1n), /invalid serial/);
    assert.throws(() => canonicalSerial(null as unknown as string), /invalid serial/);
  });

  it('formats colon hex like openssl', () => {
    assert.equal(colonSerial('abc'), '0A:BC');
  });
});
