// The timing model: how long a simulated terminal takes to serve a command. The
// delay is a real asynchronous wait (setTimeout), never a CPU spin, so fifty
// terminals in one process wait in parallel like fifty devices.
import { setTimeout as sleepMs } from 'node:timers/promises';

export interface TimingModel {
  /** fixed cost of every command (protocol request or on-device action) */
  perCommandMs: number;
  /** per user record written (PUT_USERS, DELETE_USERS, on-device enroll/edit/delete) */
  perUserWriteMs: number;
  /** per user record read (GET_USERS) */
  perUserReadMs: number;
  /** per entry of a LIST_USERS page (the index is cheap compared with whole records) */
  perUserListedMs: number;
  /** per event returned by GET_LOG */
  perEventReadMs: number;
}

/** Roughly a real terminal. */
export const DEFAULT_TIMING: TimingModel = {
  perCommandMs: 2,
  perUserWriteMs: 3,
  perUserReadMs: 1,
  perUserListedMs: 0.05,
  perEventReadMs: 0.01,
};

/** No simulated latency at all (tests). */
export const ZERO_TIMING: TimingModel = {
  perCommandMs: 0,
  perUserWriteMs: 0,
  perUserReadMs: 0,
  perUserListedMs: 0,
  perEventReadMs: 0,
};

export function resolveTiming(t?: Partial<TimingModel>): TimingModel {
  const out = { ...DEFAULT_TIMING, ...(t ?? {}) };
  for (const [k, v] of Object.entries(out)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`timing.${k} must be a number >= 0`);
  }
  return out;
}

/** Waits `ms` milliseconds (fractions accumulate: anything under 0.5 ms is skipped). */
export async function delay(ms: number): Promise<void> {
  if (ms >= 0.5) await sleepMs(Math.round(ms));
}
