// The event stream's gap rule (src/admin/events.ts deliverable): on
// PostgreSQL several daemons' transactions commit in any order, so an event
// can appear after one with a higher ID. The stream stops in front of a
// missing ID while the event after it is young, so no event is skipped and
// the IDs it sends stay ascending; an old gap (a rolled-back insert, pruned
// events) is passed.
import { describe, expect, it } from 'vitest';
import { deliverable } from '../src/admin/events.js';
import type { StoredEvent } from '../src/store/types.js';

const NOW = 1_000_000;
const ev = (id: number, ageMs: number): StoredEvent => ({ id, time: NOW - ageMs, type: 'T', terminalId: null, userId: null, detail: null });
const ids = (l: readonly StoredEvent[]) => l.map((e) => e.id);

describe('event stream: gaps in event IDs', () => {
  it('without a hold (SQLite: IDs commit in order) everything read is sent', () => {
    expect(ids(deliverable([ev(11, 0), ev(14, 0)], 10, 0, NOW))).toEqual([11, 14]);
  });

  it('stops in front of a young gap, and sends the rest once the missing event is there', () => {
    const read = [ev(11, 100), ev(12, 100), ev(14, 100), ev(15, 50)];
    expect(ids(deliverable(read, 10, 5000, NOW))).toEqual([11, 12]);
    // the next read, from 12: 13 committed meanwhile
    expect(ids(deliverable([ev(13, 120), ev(14, 100), ev(15, 50)], 12, 5000, NOW))).toEqual([13, 14, 15]);
    // a gap right after the cursor holds everything
    expect(ids(deliverable([ev(14, 100)], 12, 5000, NOW))).toEqual([]);
  });

  it('passes a gap once the event after it is older than the hold (a rolled-back insert never fills it)', () => {
    expect(ids(deliverable([ev(14, 6000), ev(16, 10)], 12, 5000, NOW))).toEqual([14]);
    expect(ids(deliverable([ev(16, 5001)], 14, 5000, NOW))).toEqual([16]);
  });

  it('a stream from the start (cursor 0) does not wait for events that were pruned', () => {
    expect(ids(deliverable([ev(500, 10), ev(501, 10)], 0, 5000, NOW))).toEqual([500, 501]);
  });
});
