// Which dial-in sessions a daemon admits, and as what: the rules the single
// daemon (src/daemon.ts) and a cluster node (src/cluster/node.ts) share.
// Given the terminal row recorded for the device ID (or none) and what the
// session presented (src/terminal/identity.ts):
//   - a device ID the server dials may not dial in (refused, recorded as a mismatch);
//   - a known ID must present what it is bound to, else it is held pending
//     until approved; an ID recorded before identities were kept is bound now;
//   - a new ID is recorded within the rate of new device IDs
//     (--auto-approve-rate), else refused; it is auto-approved when
//     --auto-approve is on and its address is in --auto-approve-from (if given).
// The decision is pure; the caller writes the row and the events (the SQLite
// daemon synchronously, a cluster node with its asynchronous store).
import { TokenBucket } from '../rate-limit.js';
import type { TerminalRow } from '../store/types.js';
import { bindingFor, bindingMatches, inCidr, parseBinding, type BindingPolicy, type Cidr, type IdentityBinding, type PeerCredential } from './identity.js';

/** The monitoring events of sessions and their admission (both daemons write them). */
export const SessionEvent = {
  TERMINAL_ONLINE: 'TERMINAL_ONLINE',
  TERMINAL_OFFLINE: 'TERMINAL_OFFLINE',
  TERMINAL_PENDING: 'TERMINAL_PENDING',
  /** a second session claimed a device ID that has a live session; it was refused */
  PEER_IDENTITY_CONFLICT: 'PEER_IDENTITY_CONFLICT',
  /** a session for a known device ID did not present what the ID is bound to; held pending */
  PEER_IDENTITY_MISMATCH: 'PEER_IDENTITY_MISMATCH',
  /** a new device ID was refused: more new device IDs than --auto-approve-rate allows */
  NEW_DEVICE_REFUSED: 'NEW_DEVICE_REFUSED',
} as const;

export const DEFAULT_NEW_DEVICE_RATE = { ratePerSec: 1, burst: 60 };

export interface AdmissionOptions {
  autoApprove?: boolean;
  /** new device IDs recorded at most this fast; beyond it a new device is refused. Default 60/min; null: no limit */
  newDeviceRate?: { ratePerSec: number; burst: number } | null;
  /** auto-approve only terminals whose source address is in one of these ranges (empty: any) */
  autoApproveFrom?: readonly Cidr[];
  /** how wide an address binding is */
  identity?: BindingPolicy;
  /** device IDs with a comm key of their own (their handshake proves the identity) */
  ownKeys?: { has(deviceId: number): boolean };
}

export type AdmissionDecision =
  /** refused: the reason goes to the terminal; `mismatch`: recorded as PEER_IDENTITY_MISMATCH on that terminal */
  | { kind: 'refuse'; reason: string; mismatch?: { terminalId: string; why: string }; rateLimited?: boolean }
  /** a known terminal; `bind`: it had no binding yet, record `presented`; `mismatch`: hold it pending */
  | { kind: 'known'; id: string; presented: IdentityBinding; bound: IdentityBinding | null; bind: boolean; mismatch: boolean }
  /** a new device ID, to be recorded (approved or pending); `outsideCidr`: auto-approve is on but the address is not allowed */
  | { kind: 'new'; id: string; presented: IdentityBinding; approved: boolean; outsideCidr: boolean };

export class DialInAdmission {
  private readonly newDevices: TokenBucket | null;
  private refused = { count: 0, loggedAt: 0 };

  constructor(private readonly o: AdmissionOptions) {
    const rate = o.newDeviceRate === undefined ? DEFAULT_NEW_DEVICE_RATE : o.newDeviceRate;
    this.newDevices = rate ? new TokenBucket(rate.ratePerSec, rate.burst) : null;
  }

  get autoApprove(): boolean {
    return this.o.autoApprove ?? false;
  }

  ownKey(deviceId: number | null | undefined): boolean {
    return deviceId != null && (this.o.ownKeys?.has(deviceId) ?? false);
  }

  /** `known`: the terminal row recorded for this device ID, if any. */
  decide(known: TerminalRow | null, deviceId: number, peer: PeerCredential): AdmissionDecision {
    const ownKey = this.ownKey(deviceId);
    const presented = bindingFor(peer, ownKey, this.o.identity);
    if (known) {
      if (known.direction === 'dial') {
        return {
          kind: 'refuse',
          reason: `device ${deviceId} is a terminal the server dials; dial-in refused`,
          mismatch: { terminalId: known.id, why: `device ${deviceId} is a terminal the server dials (${known.address}); it may not dial in` },
        };
      }
      const bound = parseBinding(known.identity);
      // recorded before identities were kept (an upgraded database): bind to this session
      if (!bound) return { kind: 'known', id: known.id, presented, bound: null, bind: true, mismatch: false };
      return { kind: 'known', id: known.id, presented, bound, bind: false, mismatch: !bindingMatches(bound, peer, ownKey) };
    }
    if (this.newDevices && !this.newDevices.take()) {
      return {
        kind: 'refuse',
        rateLimited: true,
        reason: `too many new device IDs (at most ${this.newDevices.burst} at once, ${Math.round(this.newDevices.ratePerSec * 60)} a minute); dial again later`,
      };
    }
    const from = this.o.autoApproveFrom ?? [];
    const inRange = from.length === 0 || from.some((c) => inCidr(peer.address, c));
    const approved = this.autoApprove && inRange;
    return { kind: 'new', id: String(deviceId), presented, approved, outsideCidr: this.autoApprove && !inRange };
  }

  /**
   * A held (pending, mismatched) session may be replaced by a new session for
   * the same ID only when the new one presents what the ID is bound to.
   */
  mayReplace(bound: IdentityBinding | null, deviceId: number | null, peer: PeerCredential): boolean {
    return bound !== null && bindingMatches(bound, peer, this.ownKey(deviceId));
  }

  /**
   * Counts a refused new device; returns the NEW_DEVICE_REFUSED detail to log
   * and record at most once a minute (null: counted only).
   */
  noteRefusedNewDevice(deviceId: number, peer: PeerCredential, now = Date.now()): { deviceId: number; remote: string; refusedSinceLast: number } | null {
    const r = this.refused;
    r.count++;
    if (now - r.loggedAt < 60_000) return null;
    const detail = { deviceId, remote: peer.remote, refusedSinceLast: r.count };
    r.count = 0;
    r.loggedAt = now;
    return detail;
  }
}
