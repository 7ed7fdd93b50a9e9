// The recorder: a TCP proxy between the daemon and each terminal that logs
// every frame, per session, with its direction and time, into a fixture; and
// the reader that turns such a recording back into a scenario the replayer
// can play.
//
// Fixture format (fixtures/*.frames.jsonl.gz, gzip of JSON lines):
//   line 1: {"format":"termsync-recording/1", scenario, title, terminals, speed, startedAt, payloads, ...}
//   then one object per line, ascending t (ms since the recording started, wall clock):
//     {"t":12.5,"s":3,"term":2,"ev":"open"}                    a session (TCP connection) opened
//     {"t":830.1,"s":3,"term":2,"ev":"close"}                  it closed
//     {"t":900,"term":2,"ev":"refused"}                         the terminal refused a connection
//     {"t":13.1,"s":3,"term":2,"d":"T","k":3,"q":7,"c":34,"st":0,"n":96,"p":"base64"}
//        a frame; d: "T" terminal->daemon, "D" daemon->terminal; k kind, q seq, c command,
//        st status, n payload bytes, p payload (base64; kept for every terminal->daemon frame,
//        and for daemon->terminal frames only with payloads:"all")
// Times are wall-clock ms of the recording; scenario time = t * speed.
//
// Reading a recording back: the device changes are the terminals' own log
// events with param 1 (device), seen in LOG_EVENT frames and GET_LOG answers;
// the record each change produced is the one the terminal answered to the
// daemon's GET_USERS right after; offline periods are the gaps between a
// terminal's sessions in which it refused connections.
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  Command,
  EventCode,
  FrameDecoder,
  FrameKind,
  MAX_PAYLOAD,
  ORIGIN_DEVICE,
  Status,
  decodeGetLogResponse,
  decodeGetUsersResponse,
  decodeLogEvent,
  decodeSubscribeResponse,
  decodeUser,
  type Frame,
} from '../src/codec/index.js';
import type { EventRecord } from '../src/model/event.js';
import type { UserRecord } from '../src/model/user.js';
import type { Action, Scenario } from './scenario.js';

export const RECORDING_FORMAT = 'termsync-recording/1';

export interface RecordingHeader {
  format: typeof RECORDING_FORMAT;
  scenario: string;
  title: string;
  terminals: number;
  /** scenario ms per wall ms while recording (the replay speed used) */
  speed: number;
  /** Date.now() when the recording started */
  startedAt: number;
  payloads: 'device' | 'all';
  [k: string]: unknown;
}

export type RecordedLine =
  | { t: number; s: number; term: number; ev: 'open' | 'close' }
  | { t: number; term: number; ev: 'refused' }
  | { t: number; s: number; term: number; d: 'T' | 'D'; k: number; q: number; c: number; st: number; n: number; p?: string };

/** A recording proxy for terminals 1..N listening on `ports` (in order). */
export class Recorder {
  readonly lines: RecordedLine[] = [];
  readonly startedAt = Date.now();
  private readonly t0 = performance.now();
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private nextSession = 1;
  private proxyPorts: number[] = [];

  private constructor(private readonly payloads: 'device' | 'all') {}

  static async start(terminalPorts: number[], opts: { payloads?: 'device' | 'all' } = {}): Promise<Recorder> {
    const r = new Recorder(opts.payloads ?? 'device');
    for (let i = 0; i < terminalPorts.length; i++) {
      const term = i + 1;
      const upstream = terminalPorts[i];
      const server = net.createServer((down) => r.proxy(term, upstream, down));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      r.servers.push(server);
      r.proxyPorts.push((server.address() as net.AddressInfo).port);
    }
    return r;
  }

  /** The ports the daemon should dial instead of the terminals' (same order). */
  ports(): number[] {
    return [...this.proxyPorts];
  }

  private now(): number {
    return Math.round((performance.now() - this.t0) * 10) / 10;
  }

  private proxy(term: number, upstreamPort: number, down: net.Socket): void {
    const up = net.connect({ host: '127.0.0.1', port: upstreamPort });
    this.sockets.add(down);
    this.sockets.add(up);
    const s = this.nextSession++;
    let opened = false;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      if (opened) this.lines.push({ t: this.now(), s, term, ev: 'close' });
      down.destroy();
      up.destroy();
      this.sockets.delete(down);
      this.sockets.delete(up);
    };
    up.once('connect', () => {
      opened = true;
      this.lines.push({ t: this.now(), s, term, ev: 'open' });
    });
    up.once('error', () => {
      if (!opened) this.lines.push({ t: this.now(), term, ev: 'refused' });
      close();
    });
    down.once('error', close);
    up.once('close', close);
    down.once('close', close);
    const decT = new FrameDecoder({ maxPayload: MAX_PAYLOAD });
    const decD = new FrameDecoder({ maxPayload: MAX_PAYLOAD });
    const log = (d: 'T' | 'D', f: Frame) => {
      const keep = d === 'T' || this.payloads === 'all';
      this.lines.push({ t: this.now(), s, term, d, k: f.kind, q: f.seq, c: f.command, st: f.status, n: f.payload.length, ...(keep && f.payload.length ? { p: f.payload.toString('base64') } : {}) });
    };
    // frames are logged as they pass; a stream the decoder cannot follow is still forwarded
    let tOk = true;
    let dOk = true;
    up.on('data', (chunk: Buffer) => {
      if (tOk) {
        try {
          decT.feedEach(chunk, (f) => log('T', f));
        } catch {
          tOk = false;
        }
      }
      down.write(chunk);
    });
    down.on('data', (chunk: Buffer) => {
      if (dOk) {
        try {
          decD.feedEach(chunk, (f) => log('D', f));
        } catch {
          dOk = false;
        }
      }
      if (up.connecting || up.writable) up.write(chunk);
    });
  }

  async close(): Promise<void> {
    for (const s of this.servers) s.close();
    for (const so of this.sockets) so.destroy();
    await Promise.all(this.servers.map((s) => (s.listening ? once(s, 'close') : Promise.resolve())));
  }

  header(h: { scenario: string; title: string; terminals: number; speed: number; [k: string]: unknown }): RecordingHeader {
    return { ...h, format: RECORDING_FORMAT, startedAt: this.startedAt, payloads: this.payloads };
  }
}

export function writeRecording(file: string, header: RecordingHeader, lines: RecordedLine[]): number {
  const text = [JSON.stringify(header), ...lines.map((l) => JSON.stringify(l))].join('\n') + '\n';
  const gz = gzipSync(text, { level: 9 });
  writeFileSync(file, gz);
  return gz.length;
}

export function readRecording(file: string): { header: RecordingHeader; lines: RecordedLine[] } {
  const raw = readFileSync(file);
  const text = (raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw).toString('utf8');
  const rows = text.split('\n').filter((l) => l.trim() !== '');
  const header = JSON.parse(rows[0]) as RecordingHeader;
  if (header.format !== RECORDING_FORMAT) throw new Error(`${file}: not a termsync recording (format ${JSON.stringify(header.format)})`);
  return { header, lines: rows.slice(1).map((l) => JSON.parse(l) as RecordedLine) };
}

const CHANGE = new Set<number>([EventCode.USER_ENROLL_SUCCESS, EventCode.USER_UPDATE_SUCCESS, EventCode.USER_PARTIAL_UPDATE_SUCCESS]);

/**
 * Rebuilds the scenario a recording shows: who was enrolled or edited at
 * which terminal and when (scenario time), with the records the terminals
 * reported, and when terminals went offline and came back.
 */
export function scenarioFromRecording(header: RecordingHeader, lines: RecordedLine[], name = header.scenario): Scenario {
  const speed = header.speed || 1;
  const changes: { t: number; term: number; userId: string; enroll: boolean; frameT: number }[] = [];
  const seen = new Set<string>(); // term/epoch/event id: an event resent after a reconnect counts once
  /** pulled records per terminal, in time order */
  const pulled: { t: number; term: number; user: UserRecord }[] = [];
  /** per session: events up to this ID were logged before the session subscribed (its backlog) */
  const backlogUpTo = new Map<number, number>();
  const events = (t: number, term: number, epoch: number, list: EventRecord[], session: number) => {
    const sessionOpen = bySession.get(session)?.open ?? 0;
    const backlog = backlogUpTo.get(session) ?? 0;
    for (const e of list) {
      const key = `${term}/${epoch}/${e.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      if (e.param !== ORIGIN_DEVICE || !CHANGE.has(e.code) || !e.userId) continue;
      // An event logged while the terminal was unreachable arrives late, in the backlog of the
      // next session: its own clock (whole seconds) says when it happened, and it happened
      // before that session opened. A live event happened when it arrived.
      const byClock = e.dateTime * 1000 - header.startedAt + 999;
      const when = e.id <= backlog ? Math.min(byClock, sessionOpen - 1) : t;
      changes.push({ t: Math.max(0, when), term, userId: e.userId, enroll: e.code === EventCode.USER_ENROLL_SUCCESS, frameT: t });
    }
  };
  const sessions: { term: number; open: number; close: number | null }[] = [];
  const bySession = new Map<number, { term: number; open: number; close: number | null }>();
  for (const l of lines) {
    if ('ev' in l) {
      if (l.ev === 'open') {
        const x = { term: l.term, open: l.t, close: null };
        sessions.push(x);
        bySession.set(l.s, x);
      } else if (l.ev === 'close') {
        const x = bySession.get(l.s);
        if (x) x.close = l.t;
      }
      continue;
    }
    if (l.d !== 'T' || !l.p) continue;
    const payload = Buffer.from(l.p, 'base64');
    if (l.k === FrameKind.EVENT && l.c === Command.LOG_EVENT) {
      const b = decodeLogEvent(payload);
      events(l.t, l.term, b.logEpoch, b.events, l.s);
    } else if (l.k === FrameKind.RESPONSE && l.c === Command.GET_LOG && l.st === Status.OK) {
      const b = decodeGetLogResponse(payload);
      events(l.t, l.term, b.logEpoch, b.events, l.s);
    } else if (l.k === FrameKind.RESPONSE && l.c === Command.SUBSCRIBE_LOG && l.st === Status.OK) {
      backlogUpTo.set(l.s, decodeSubscribeResponse(payload).lastEventId);
    } else if (l.k === FrameKind.RESPONSE && l.c === Command.GET_USERS && l.st === Status.OK) {
      for (const r of decodeGetUsersResponse(payload).results) {
        if (r.status === Status.OK) pulled.push({ t: l.t, term: l.term, user: decodeUser(r.record).user });
      }
    }
  }
  const actions: Action[] = [];
  for (const c of changes) {
    // the record this change produced: the terminal's first answer about the user after the event arrived
    const rec = pulled.find((p) => p.term === c.term && p.user.id === c.userId && p.t >= c.frameT);
    if (!rec) continue; // never pulled (sync was off, or the user was deleted first)
    const user = rec.user;
    user.flag = 0;
    user.version = 0;
    actions.push(c.enroll ? { t: c.t * speed, term: c.term, op: 'enroll', user } : { t: c.t * speed, term: c.term, op: 'edit-to', user });
  }
  // offline: a session ended and the next one of the same terminal came only after refusals
  const refused = lines.filter((l): l is Extract<RecordedLine, { ev: 'refused' }> => 'ev' in l && l.ev === 'refused');
  for (let term = 1; term <= header.terminals; term++) {
    const mine = sessions.filter((x) => x.term === term).sort((a, b) => a.open - b.open);
    for (let i = 0; i < mine.length; i++) {
      const end = mine[i].close;
      if (end === null) continue;
      const next = mine[i + 1];
      const until = next ? next.open : Infinity;
      if (!refused.some((r) => r.term === term && r.t >= end && r.t <= until)) continue;
      actions.push({ t: end * speed, term, op: 'offline' });
      if (next) actions.push({ t: next.open * speed, term, op: 'online' });
    }
  }
  actions.sort((a, b) => a.t - b.t);
  // a terminal cannot act before the scenario starts
  const t0 = actions.length ? actions[0].t : 0;
  for (const a of actions) a.t = Math.round(a.t - t0);
  return { name, title: header.title, terminals: header.terminals, actions, source: { recording: header.scenario, recordedAt: new Date(header.startedAt).toISOString(), speed } };
}
