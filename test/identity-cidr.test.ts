// Address ranges and bindings of src/terminal/identity.ts, and the token bucket.
import { describe, expect, it } from 'vitest';
import { TokenBucket, parseRate } from '../src/rate-limit.js';
import { bindingFor, bindingMatches, inCidr, networkOf, parseCidr, plainAddress } from '../src/terminal/identity.js';

describe('address ranges', () => {
  it('parses IPv4 and IPv6 ranges and bare addresses; refuses malformed ones', () => {
    expect(parseCidr('10.20.0.0/16')).toMatchObject({ family: 4, bits: 16 });
    expect(parseCidr('10.1.2.3')).toMatchObject({ family: 4, bits: 32 });
    expect(parseCidr('fd00::/8')).toMatchObject({ family: 6, bits: 8 });
    expect(parseCidr('::ffff:10.0.0.1')).toMatchObject({ family: 4, bits: 32 });
    for (const bad of ['10.0.0.0/33', '10.0.0/8', 'fd00::/129', 'host/8', '1.2.3.4/8/9', '10.0.0.0/x']) expect(parseCidr(bad), bad).toBeUndefined();
  });

  it('matches addresses inside a range only, IPv4-mapped IPv6 addresses as IPv4', () => {
    const c = parseCidr('192.168.4.0/22')!;
    expect(['192.168.4.1', '192.168.7.254', '::ffff:192.168.5.5'].map((a) => inCidr(a, c))).toEqual([true, true, true]);
    expect(['192.168.8.1', '192.168.3.255', 'fd00::1'].map((a) => inCidr(a, c))).toEqual([false, false, false]);
    const v6 = parseCidr('2001:db8:1::/48')!;
    expect(inCidr('2001:db8:1:ffff::7', v6)).toBe(true);
    expect(inCidr('2001:db8:2::1', v6)).toBe(false);
    expect(inCidr('10.0.0.1', parseCidr('0.0.0.0/0')!)).toBe(true);
    expect(plainAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
  });

  it('networkOf gives the prefix of an address', () => {
    expect(networkOf('10.1.2.3', 24)).toBe('10.1.2.0/24');
    expect(networkOf('10.1.2.3', 32)).toBe('10.1.2.3/32');
    expect(networkOf('2001:db8::5', 64)).toBe('2001:db8:0:0:0:0:0:0/64');
  });
});

describe('bindings', () => {
  const peer = (address: string, certSha256: string | null = null) => ({ remote: `${address}:5000`, address, certSha256 });
  it('own key first, then certificate, then the source address', () => {
    expect(bindingFor(peer('10.0.0.5', 'ab'), true)).toEqual({ kind: 'key' });
    expect(bindingFor(peer('10.0.0.5', 'ab'), false)).toEqual({ kind: 'cert', sha256: 'ab' });
    expect(bindingFor(peer('10.0.0.5'), false, { prefixV4: 24 })).toEqual({ kind: 'address', net: '10.0.0.0/24' });
  });

  it('a session matches only with what the ID is bound to', () => {
    expect(bindingMatches({ kind: 'key' }, peer('10.0.0.5'), true)).toBe(true);
    expect(bindingMatches({ kind: 'key' }, peer('10.0.0.5'), false)).toBe(false); // the own key was removed: the site key does not stand in
    expect(bindingMatches({ kind: 'cert', sha256: 'ab' }, peer('10.0.0.5', 'ab'), false)).toBe(true);
    expect(bindingMatches({ kind: 'cert', sha256: 'ab' }, peer('10.0.0.5', 'cd'), false)).toBe(false);
    expect(bindingMatches({ kind: 'cert', sha256: 'ab' }, peer('10.0.0.5'), false)).toBe(false);
    expect(bindingMatches({ kind: 'address', net: '10.0.0.0/24' }, peer('10.0.0.77'), false)).toBe(true);
    expect(bindingMatches({ kind: 'address', net: '10.0.0.0/24' }, peer('10.0.1.77'), false)).toBe(false);
  });
});

describe('token bucket', () => {
  it('allows the burst, then the rate', () => {
    let now = 0;
    const b = new TokenBucket(2, 5, () => now);
    expect(Array.from({ length: 7 }, () => b.take())).toEqual([true, true, true, true, true, false, false]);
    now += 1000; // two more tokens
    expect([b.take(), b.take(), b.take()]).toEqual([true, true, false]);
    now += 10_000;
    expect(b.full).toBe(true);
  });

  it('takeUpTo spends what there is, at most n', () => {
    let now = 0;
    const b = new TokenBucket(10, 100, () => now);
    expect(b.takeUpTo(30)).toBe(30);
    expect(b.takeUpTo(1000)).toBe(70);
    expect(b.takeUpTo(5)).toBe(0);
    now += 500;
    expect(b.takeUpTo(1000)).toBe(5);
  });

  it('parses N/min and N/s', () => {
    expect(parseRate('60/min')).toEqual({ ratePerSec: 1, burst: 60 });
    expect(parseRate('5/s')).toEqual({ ratePerSec: 5, burst: 5 });
    expect(parseRate('0/min')).toBeUndefined();
    expect(parseRate('fast')).toBeUndefined();
  });
});
