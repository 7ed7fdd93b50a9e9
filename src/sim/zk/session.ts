// The device side of one TCP connection to a simulated ZK terminal.
//
// Faithful to what real clients expect: a connection that sends nothing (a
// client's probe) is harmless; every reply frame goes out in its own write; a
// chunked read answers PREPARE_DATA, DATA frames of 1008 bytes (their session
// field counting 0, 1, 2 ...) and ACK_OK, with the timing model's frame gap
// between them; realtime events carry the event flag in the session field and
// reply id 0, and the client's ACK_OK to an event is not answered.
import type net from 'node:net';
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Cmd, EventFlag, Reply, SAVE_USERTEMPS_DATA, Table, ZK_DEVICE_PACKET, ZK_MAX_PAYLOAD } from '../../drivers/zk/constants.js';
import { encodeZkFrame, makeCommKey, ZkFrameDecoder, ZkProtocolError, type ZkFrame } from '../../drivers/zk/codec.js';
import {
  decodePrepareBuffer,
  decodeUploadBuffer,
  decodeUserRecord,
  encodeAttendanceEvent,
  encodeFreeSizes,
  encodeTemplateTable,
  encodeUserTable,
  encodeZkTime,
} from '../../drivers/zk/records.js';
import type { ZkSimTerminal } from './device.js';

/** Largest upload a client may announce with PREPARE_DATA. */
const MAX_UPLOAD = ZK_MAX_PAYLOAD;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

export class ZkSimSession {
  readonly sessionId: number;
  private authed: boolean;
  private readonly decoder = new ZkFrameDecoder();
  private eventMask = 0;
  /** the table prepared by PREPARE_BUFFER, read by READ_BUFFER */
  private prepared: Buffer | undefined;
  /** a client upload in progress (PREPARE_DATA then DATA) */
  private upload: { size: number; parts: Buffer[]; got: number } | undefined;
  private work: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly onEnrolled = (uid: number) => this.sendEvent(EventFlag.ENROLLUSER, Buffer.from([uid & 0xff, uid >> 8]));
  private readonly onPunched = (p: { userId: string; status: number; punch: number; time: Date }) => this.sendPunch(p);
  private readonly onDrop = () => this.socket.destroy();

  constructor(
    private readonly terminal: ZkSimTerminal,
    private readonly socket: net.Socket,
    private readonly log?: Logger,
  ) {
    this.sessionId = randomInt(1, 0xffff);
    this.authed = terminal.password === 0;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.dispose());
    terminal.on('enrolled', this.onEnrolled);
    terminal.on('punched', this.onPunched);
    terminal.on('drop', this.onDrop);
    terminal.connections++;
  }

  private dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.terminal.sessionEnded(this);
    this.terminal.connections--;
    this.terminal.off('enrolled', this.onEnrolled);
    this.terminal.off('punched', this.onPunched);
    this.terminal.off('drop', this.onDrop);
  }

  private onData(chunk: Buffer): void {
    if (this.terminal.blackholed) return;
    let frames: ZkFrame[];
    try {
      frames = this.decoder.feed(chunk);
    } catch (e) {
      this.log?.warn({ terminal: this.terminal.index, err: (e as ZkProtocolError).message }, 'zk sim: unreadable bytes from the client, closing');
      this.socket.destroy();
      return;
    }
    for (const f of frames) {
      if (f.command === Reply.ACK_OK) {
        // a client's acknowledgement of a realtime event: never answered
        this.terminal.acksReceived++;
        continue;
      }
      this.work = this.work.then(() => this.serve(f)).catch((e) => {
        this.log?.error({ terminal: this.terminal.index, err: (e as Error).message }, 'zk sim: command failed');
        this.socket.destroy();
      });
    }
  }

  private async write(frame: Buffer): Promise<void> {
    if (this.closed || this.socket.destroyed) return;
    if (this.terminal.takeCorrupt()) frame[frame.length - 1] ^= 0xff;
    await new Promise<void>((resolve) => this.socket.write(frame, () => resolve()));
  }

  private reply(req: ZkFrame, code: number, data?: Buffer, session = this.sessionId): Promise<void> {
    return this.write(encodeZkFrame({ command: code, session, reply: req.reply, data }));
  }

  private sendEvent(flag: number, data: Buffer): void {
    if (!this.authed || (this.eventMask & flag) === 0) return;
    void this.write(encodeZkFrame({ command: Cmd.REG_EVENT, session: flag, reply: 0, data }));
  }

  private sendPunch(p: { userId: string; status: number; punch: number; time: Date }): void {
    const t = p.time;
    const size = this.terminal.attlogSize === 12 && /^[0-9]{1,9}$/.test(p.userId) ? 12 : 32;
    const data = encodeAttendanceEvent(
      { userId: p.userId, status: p.status, punch: p.punch, time: { year: t.getFullYear(), month: t.getMonth() + 1, day: t.getDate(), hour: t.getHours(), minute: t.getMinutes(), second: t.getSeconds() } },
      size,
    );
    this.sendEvent(EventFlag.ATTLOG, data);
  }

  private async gap(): Promise<void> {
    const ms = this.terminal.timing.frameGapMs;
    if (ms > 0) await sleep(ms);
  }

  private async holdIfStalled(): Promise<void> {
    const left = this.terminal.stallUntil - Date.now();
    if (left > 0) await sleep(left);
  }

  /** A multi-frame answer: PREPARE_DATA (size, packet size), DATA frames, ACK_OK. */
  private async sendChunked(req: ZkFrame, data: Buffer): Promise<void> {
    await this.reply(req, Cmd.PREPARE_DATA, Buffer.concat([u32(data.length), u32(ZK_DEVICE_PACKET)]));
    let counter = 0;
    for (let p = 0; p < data.length; p += ZK_DEVICE_PACKET) {
      await this.gap();
      await this.reply(req, Cmd.DATA, data.subarray(p, Math.min(p + ZK_DEVICE_PACKET, data.length)), counter++);
    }
    await this.gap();
    await this.reply(req, Reply.ACK_OK, undefined, Math.max(0, counter - 1));
  }

  private table(inner: number, fct: number): Buffer | undefined {
    const t = this.terminal;
    if (inner === Table.USERS.inner) return encodeUserTable(t.listUsers(), t.recordSize);
    if (inner === Table.TEMPLATES.inner && fct === Table.TEMPLATES.fct) return encodeTemplateTable(t.allTemplates());
    if (inner === Table.ATTLOG.inner || inner === Table.OPLOG.inner) return u32(0); // no stored records are simulated
    return undefined;
  }

  private option(name: string): string | undefined {
    const t = this.terminal;
    const known: Record<string, string> = {
      '~SerialNumber': t.serialNumber,
      '~Platform': t.platform,
      '~DeviceName': t.deviceName,
      '~OEMVendor': 'termsync',
      '~ZKFPVersion': '10',
      '~PIN2Width': t.recordSize === 72 ? '23' : '9',
      '~IsABCPinEnable': t.recordSize === 72 ? '1' : '0',
      '~OS': '1',
      MAC: `00:17:61:00:${(t.index >> 8).toString(16).padStart(2, '0')}:${(t.index & 0xff).toString(16).padStart(2, '0')}`,
      WorkCode: '0',
      FaceFunOn: '0',
      '~SSR': '1',
    };
    return known[name];
  }

  private async serve(f: ZkFrame): Promise<void> {
    const t = this.terminal;
    if (t.blackholed) return;
    await this.holdIfStalled();
    const tm = t.timing;
    if (f.command === Cmd.CONNECT) {
      await t.run(tm.perCommandMs, () => undefined);
      return this.reply(f, this.authed ? Reply.ACK_OK : Reply.ACK_UNAUTH);
    }
    if (f.command === Cmd.AUTH) {
      const ok = f.data.length >= 4 && makeCommKey(t.password, this.sessionId).equals(f.data.subarray(0, 4));
      if (ok) this.authed = true;
      return this.reply(f, ok ? Reply.ACK_OK : Reply.ACK_UNAUTH);
    }
    if (f.command === Cmd.EXIT) {
      await this.reply(f, Reply.ACK_OK);
      this.socket.end();
      return;
    }
    if (!this.authed) return this.reply(f, Reply.ACK_UNAUTH);

    switch (f.command) {
      case Cmd.GET_VERSION:
        return this.reply(f, Reply.ACK_OK, Buffer.from(`${t.firmware}\0`, 'latin1'));
      case Cmd.OPTIONS_RRQ: {
        const name = f.data.toString('latin1').split('\0')[0];
        const v = this.option(name);
        return v === undefined ? this.reply(f, Reply.ACK_ERROR) : this.reply(f, Reply.ACK_OK, Buffer.from(`${name}=${v}\0`, 'latin1'));
      }
      case Cmd.OPTIONS_WRQ:
      case Cmd.REFRESHOPTION:
      case Cmd.REFRESHDATA:
      case Cmd.CANCELCAPTURE:
      case Cmd.STARTVERIFY:
        await t.run(tm.perCommandMs, () => undefined);
        return this.reply(f, Reply.ACK_OK);
      case Cmd.STATE_RRQ:
        return this.reply(f, Reply.ACK_OK, undefined, 0);
      case Cmd.DISABLEDEVICE:
      case Cmd.ENABLEDEVICE:
        t.setDisabled(this, f.command === Cmd.DISABLEDEVICE);
        return this.reply(f, Reply.ACK_OK);
      case Cmd.GET_FREE_SIZES:
        return this.reply(
          f,
          Reply.ACK_OK,
          encodeFreeSizes({
            users: t.userCount,
            fingers: t.templateCount,
            records: t.attendanceRecords,
            fingerCapacity: t.fingerCapacity,
            userCapacity: t.userCapacity,
            recordCapacity: 100_000,
          }),
        );
      case Cmd.GET_TIME: {
        const d = new Date();
        return this.reply(f, Reply.ACK_OK, u32(encodeZkTime({ year: d.getFullYear(), month: d.getMonth() + 1, day: d.getDate(), hour: d.getHours(), minute: d.getMinutes(), second: d.getSeconds() })));
      }
      case Cmd.SET_TIME:
        return this.reply(f, Reply.ACK_OK);
      case Cmd.REG_EVENT:
        this.eventMask = f.data.length >= 4 ? f.data.readUInt32LE(0) : f.data.length >= 2 ? f.data.readUInt16LE(0) : 0;
        await this.reply(f, Reply.ACK_OK);
        t.emit('registered', this.eventMask);
        return;
      case Cmd.PREPARE_BUFFER: {
        if (f.data.length < 11) return this.reply(f, Reply.ACK_ERROR);
        const { inner, fct } = decodePrepareBuffer(f.data);
        const users = inner === Table.USERS.inner ? t.userCount : 0;
        const data = await t.run(tm.perCommandMs + users * tm.perUserReadMs, () => this.table(inner, fct));
        if (!data) return this.reply(f, Reply.ACK_ERROR);
        if (data.length <= t.directDataMax) return this.reply(f, Cmd.DATA, data);
        this.prepared = data;
        const info = Buffer.alloc(13);
        info.writeUInt32LE(data.length, 1);
        info.writeUInt32LE(data.length, 5);
        return this.reply(f, Reply.ACK_OK, info);
      }
      case Cmd.READ_BUFFER: {
        if (f.data.length < 8 || !this.prepared) return this.reply(f, Reply.ACK_ERROR);
        const start = f.data.readUInt32LE(0);
        const size = f.data.readUInt32LE(4);
        if (start > this.prepared.length || size === 0 || start + size > this.prepared.length) return this.reply(f, Reply.ACK_ERROR);
        return this.sendChunked(f, this.prepared.subarray(start, start + size));
      }
      case Cmd.FREE_DATA:
        this.prepared = undefined;
        this.upload = undefined;
        return this.reply(f, Reply.ACK_OK);
      case Cmd.USER_WRQ: {
        if (f.data.length !== t.recordSize) return this.reply(f, Reply.ACK_ERROR);
        const u = decodeUserRecord(f.data);
        const err = await t.run(tm.perCommandMs + tm.perUserWriteMs, () => t.storeRecord(u));
        if (err) this.log?.debug({ terminal: t.index, err }, 'zk sim: USER_WRQ refused');
        return this.reply(f, err ? Reply.ACK_ERROR : Reply.ACK_OK);
      }
      case Cmd.DELETE_USER: {
        if (f.data.length < 2) return this.reply(f, Reply.ACK_ERROR);
        const ok = await t.run(tm.perCommandMs + tm.perUserWriteMs, () => t.deleteUid(f.data.readUInt16LE(0)));
        return this.reply(f, ok ? Reply.ACK_OK : Reply.ACK_ERROR);
      }
      case Cmd.DELETE_USERTEMP: {
        if (f.data.length < 3) return this.reply(f, Reply.ACK_ERROR);
        const ok = await t.run(tm.perCommandMs, () => t.deleteTemplate(f.data.readUInt16LE(0), f.data[2]));
        return this.reply(f, ok ? Reply.ACK_OK : Reply.ACK_ERROR);
      }
      case Cmd.DEL_USER_TEMP: {
        if (f.data.length < 25) return this.reply(f, Reply.ACK_ERROR);
        const id = f.data.subarray(0, 24).toString('utf8').split('\0')[0];
        const u = t.userById(id);
        const ok = !!u && (await t.run(tm.perCommandMs, () => t.deleteTemplate(u.uid, f.data[24])));
        return this.reply(f, ok ? Reply.ACK_OK : Reply.ACK_ERROR);
      }
      case Cmd.GET_USERTEMP:
      case Cmd.USERTEMP_RRQ: {
        if (f.data.length < 3) return this.reply(f, Reply.ACK_ERROR);
        const tpl = t.template(f.data.readUInt16LE(0), f.data[2]);
        if (!tpl) return this.reply(f, Reply.ACK_ERROR);
        // as on the captured devices: the template plus one trailing byte
        return this.sendChunked(f, Buffer.concat([tpl.template, Buffer.from([1])]));
      }
      case Cmd.PREPARE_DATA: {
        const size = f.data.length >= 4 ? f.data.readUInt32LE(0) : -1;
        if (size <= 0 || size > MAX_UPLOAD) return this.reply(f, Reply.ACK_ERROR);
        this.upload = { size, parts: [], got: 0 };
        return this.reply(f, Reply.ACK_OK);
      }
      case Cmd.DATA: {
        const up = this.upload;
        if (!up || up.got + f.data.length > up.size) {
          this.upload = undefined;
          return this.reply(f, Reply.ACK_ERROR);
        }
        up.parts.push(f.data);
        up.got += f.data.length;
        return this.reply(f, Reply.ACK_OK);
      }
      case Cmd.SAVE_USERTEMPS:
        return this.reply(f, await this.saveUpload(f));
      default:
        return this.reply(f, Reply.ACK_UNKNOWN);
    }
  }

  /** Command 110: store the users and templates of the uploaded buffer. */
  private async saveUpload(f: ZkFrame): Promise<number> {
    const t = this.terminal;
    const up = this.upload;
    this.upload = undefined;
    if (!up || up.got !== up.size || !f.data.equals(SAVE_USERTEMPS_DATA)) return Reply.ACK_ERROR;
    let parsed;
    try {
      parsed = decodeUploadBuffer(Buffer.concat(up.parts));
    } catch (e) {
      this.log?.debug({ terminal: t.index, err: (e as Error).message }, 'zk sim: unreadable upload');
      return Reply.ACK_ERROR;
    }
    if (parsed.users.length > 0 && parsed.recordSize !== t.recordSize) return Reply.ACK_ERROR;
    const tm = t.timing;
    return t.run(tm.perCommandMs + parsed.users.length * tm.perUserWriteMs + parsed.templates.length * tm.perTemplateWriteMs, () => {
      for (const u of parsed.users) {
        const err = t.storeRecord(u);
        if (err) return Reply.ACK_ERROR;
        // the upload replaces the user's templates
        for (const old of t.templatesOf(u.uid)) t.deleteTemplate(u.uid, old.finger);
      }
      for (const tpl of parsed.templates) if (t.storeTemplate(tpl)) return Reply.ACK_ERROR;
      return Reply.ACK_OK;
    });
  }
}
