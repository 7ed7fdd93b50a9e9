// utf8Compare orders strings as their UTF-8 bytes do (the order of user IDs in
// LIST_USERS), without allocating: checked against Buffer.compare on random
// strings mixing ASCII, 2- and 3-byte characters, characters above U+E000,
// surrogate pairs (4 bytes) and lone surrogates.
import { describe, expect, it } from 'vitest';
import { utf8Compare } from '../src/utf8-order.js';

const PIECES = ['a', 'b', 'z', '0', '~', '\u00e9', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\uffee', '\uffff', '\ud83d\ude00', '\ud800\udc00', '\udbff\udfff', '\ud800', '\udc00', ''];

function rand(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);

describe('utf8Compare', () => {
  it('agrees with Buffer.compare of the UTF-8 bytes on 50,000 random pairs', () => {
    const r = rand(1234);
    const str = () => Array.from({ length: Math.floor(r() * 6) }, () => PIECES[Math.floor(r() * PIECES.length)]).join('');
    for (let k = 0; k < 50_000; k++) {
      const a = str();
      // often a shared prefix, so the difference falls anywhere
      const b = r() < 0.5 ? a.slice(0, Math.floor(r() * (a.length + 1))) + str() : str();
      expect(sign(utf8Compare(a, b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(sign(Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))));
    }
  });

  it('puts a character beyond U+FFFF after U+E000-U+FFFF, as UTF-8 does (UTF-16 code units would not)', () => {
    expect(utf8Compare('\ud83d\ude00', '\uffff')).toBeGreaterThan(0);
    expect('\ud83d\ude00' < '\uffff').toBe(true);
    expect(utf8Compare('abc', 'abd')).toBeLessThan(0);
    expect(utf8Compare('ab', 'abc')).toBeLessThan(0);
    expect(utf8Compare('x', 'x')).toBe(0);
  });
});
