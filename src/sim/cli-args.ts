// Option parsers the sim command's flags share (src/sim/cli.ts and src/sim/zk/cli.ts).
import { InvalidArgumentError } from 'commander';

/** A whole number in min..max. */
export function intArg(min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) throw new InvalidArgumentError(`must be a whole number in ${min}..${max}`);
    return Number(v);
  };
}

/** A number of milliseconds in 0..60000. */
export function msArg(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 60_000) throw new InvalidArgumentError('must be a number of milliseconds in 0..60000');
  return n;
}
