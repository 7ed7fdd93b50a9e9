// Micro-benchmark: decoding a LOG_EVENT payload of 1000 event records (48 KiB),
// the codec's hot path. Compares
//   fast         decodeLogEvent: the codec's validating Buffer decoder
//   binparser    binary-parser .array of eventRecordParser (the reference declaration)
//   dataview     a plain hand-written DataView + TextDecoder decoder (no validation)
//   copy         Buffer copy of the payload (memory-bandwidth ceiling)
// Run: npx tsx bench/codec.bench.ts   (or call runCodecBench() from a bench runner)
import { pathToFileURL } from 'node:url';
import { Parser } from 'binary-parser';
import { do_not_optimize, measure } from 'mitata';
import { EventCode, EVENT_RECORD_SIZE, decodeLogEvent, encodeLogEvent, eventRecordParser, type EventRecord } from '../src/codec/index.js';

const RECORDS = 1000;

export interface CodecBenchResult {
  /** records/s of the codec's fast decoder (decodeLogEvent) */
  recordsPerSec: number;
  /** records/s of the plain hand-written DataView decoder */
  handwrittenRecordsPerSec: number;
  /** recordsPerSec / handwrittenRecordsPerSec */
  ratioToHandwritten: number;
  /** payload MB/s (10^6 bytes) of the fast decoder */
  mbPerSec: number;
  binaryParserRecordsPerSec: number;
  copyMbPerSec: number;
  payloadBytes: number;
}

/** a realistic batch: mostly user events with numeric or short alphanumeric IDs, some device events, a few non-ASCII IDs */
export function sampleLogEventPayload(n = RECORDS): Buffer {
  const codes = [EventCode.USER_ENROLL_SUCCESS, EventCode.USER_UPDATE_SUCCESS, EventCode.USER_DELETE_SUCCESS, EventCode.TCP_CONNECTED];
  const events: EventRecord[] = [];
  for (let i = 0; i < n; i++) {
    const code = codes[i % codes.length];
    const userId = code === EventCode.TCP_CONNECTED ? '' : i % 50 === 7 ? `Zoë ${i}` : i % 3 === 0 ? `emp-${i}, site A` : String(100_000 + i);
    events.push({ id: 1_000_000 + i, dateTime: 1_700_000_000 + i, deviceId: 538_000_123, userId, code, param: i & 1, flags: 0x08 });
  }
  return encodeLogEvent({ logEpoch: 0x5eed1234, events });
}

const logEventArrayParser = new Parser()
  .endianness('little')
  .uint32('logEpoch')
  .uint16('count')
  .uint16('reserved')
  .array('events', { type: eventRecordParser, length: 'count' });

const td = new TextDecoder('utf-8');

/** what one would write by hand without the codec: DataView reads, TextDecoder for the ID */
export function dataViewDecode(buf: Buffer): { logEpoch: number; events: EventRecord[] } {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const count = dv.getUint16(4, true);
  const events: EventRecord[] = [];
  for (let i = 0, p = 8; i < count; i++, p += EVENT_RECORD_SIZE) {
    let end = p + 12;
    while (end < p + 44 && buf[end] !== 0) end++;
    events.push({
      id: dv.getUint32(p, true),
      dateTime: dv.getUint32(p + 4, true),
      deviceId: dv.getUint32(p + 8, true),
      userId: td.decode(buf.subarray(p + 12, end)),
      code: dv.getUint16(p + 44, true),
      param: dv.getUint8(p + 46),
      flags: dv.getUint8(p + 47),
    });
  }
  return { logEpoch: dv.getUint32(0, true), events };
}

export async function runCodecBench(): Promise<CodecBenchResult> {
  const payload = sampleLogEventPayload();
  // all four must agree on the content before their speed means anything
  const fast = decodeLogEvent(payload);
  const ref = logEventArrayParser.parse(payload) as { events: EventRecord[] };
  const dv = dataViewDecode(payload);
  if (JSON.stringify(fast.events) !== JSON.stringify(ref.events) || JSON.stringify(fast.events) !== JSON.stringify(dv.events))
    throw new Error('codec bench: decoders disagree');

  const opts = { min_cpu_time: 400e6 }; // ns of CPU per candidate
  const tFast = await measure(() => do_not_optimize(decodeLogEvent(payload)), opts);
  const tRef = await measure(() => do_not_optimize(logEventArrayParser.parse(payload)), opts);
  const tDv = await measure(() => do_not_optimize(dataViewDecode(payload)), opts);
  const tCopy = await measure(() => do_not_optimize(Buffer.from(payload)), opts);

  const perSec = (ns: number) => 1e9 / ns;
  const recordsPerSec = RECORDS * perSec(tFast.avg);
  const handwrittenRecordsPerSec = RECORDS * perSec(tDv.avg);
  return {
    recordsPerSec,
    handwrittenRecordsPerSec,
    ratioToHandwritten: recordsPerSec / handwrittenRecordsPerSec,
    mbPerSec: (payload.length * perSec(tFast.avg)) / 1e6,
    binaryParserRecordsPerSec: RECORDS * perSec(tRef.avg),
    copyMbPerSec: (payload.length * perSec(tCopy.avg)) / 1e6,
    payloadBytes: payload.length,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await runCodecBench();
  const m = (x: number) => `${(x / 1e6).toFixed(2)} M records/s`;
  process.stdout.write(
    [
      `LOG_EVENT payload: ${RECORDS} records, ${r.payloadBytes} bytes (node ${process.version}, ${process.arch})`,
      `fast decoder (decodeLogEvent, validating):  ${m(r.recordsPerSec)}  ${r.mbPerSec.toFixed(0)} MB/s`,
      `hand-written DataView decoder:               ${m(r.handwrittenRecordsPerSec)}  (fast/dataview = ${r.ratioToHandwritten.toFixed(2)}x)`,
      `binary-parser .array reference:              ${m(r.binaryParserRecordsPerSec)}`,
      `raw Buffer copy:                             ${r.copyMbPerSec.toFixed(0)} MB/s`,
      '',
    ].join('\n'),
  );
}
