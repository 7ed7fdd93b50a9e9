// The flags of the peer bounds (device identity, auto-approve limits, the
// monitoring log's retention and rate limits): parsed, checked, and handed to
// the daemon.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../src/cli/flagfile.js';
import { daemonOptions } from '../src/cli/run.js';
import { inCidr } from '../src/terminal/identity.js';

const log = pino({ level: 'silent' });
const base = ['--insecure-dev-key'];

describe('flags of the peer bounds', () => {
  it('defaults: 60 new device IDs a minute, exact-address binding, 1,000,000 events for 90 days, 10/s with a burst of 200', () => {
    const o = daemonOptions(parseRunConfig(base), log);
    expect(o.newDeviceRate).toEqual({ ratePerSec: 1, burst: 60 });
    expect(o.autoApproveFrom).toEqual([]);
    expect(o.identity).toEqual({ prefixV4: 32, prefixV6: 64 });
    expect(o.events).toEqual({ keep: 1_000_000, maxAgeDays: 90, ratePerSec: 10, burst: 200 });
  });

  it('values given reach the daemon', () => {
    const o = daemonOptions(
      parseRunConfig([...base, '--auto-approve', '--auto-approve-rate=5/s', '--auto-approve-from=10.20.0.0/16', '--auto-approve-from=fd00::/8', '--identity-prefix-v4=24', '--events-keep=5000', '--events-max-age-days=7', '--events-rate=2', '--events-burst=50']),
      log,
    );
    expect(o.newDeviceRate).toEqual({ ratePerSec: 5, burst: 5 });
    expect(o.autoApproveFrom!.map((c) => [inCidr('10.20.3.4', c), inCidr('fd12::1', c), inCidr('10.21.0.1', c)])).toEqual([
      [true, false, false],
      [false, true, false],
    ]);
    expect(o.identity).toEqual({ prefixV4: 24, prefixV6: 64 });
    expect(o.events).toEqual({ keep: 5000, maxAgeDays: 7, ratePerSec: 2, burst: 50 });
    expect(daemonOptions(parseRunConfig([...base, '--auto-approve-rate=off']), log).newDeviceRate).toBeNull();
  });

  it('bad values are refused with what the flag wants', () => {
    expect(() => parseRunConfig([...base, '--auto-approve-rate=lots'])).toThrow(/--auto-approve-rate must be N\/min or N\/s/);
    expect(() => parseRunConfig([...base, '--auto-approve-from=10.0.0.0/33'])).toThrow(/--auto-approve-from must be an address range/);
    expect(() => parseRunConfig([...base, '--events-keep=10'])).toThrow(/--events-keep must be an integer from 1000/);
  });
});
