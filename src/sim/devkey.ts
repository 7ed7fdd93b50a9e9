// The fixed, documented comm key behind `--insecure-dev-key`. It lets the
// simulator and the daemon's demo talk to each other without a key file. It is
// public (it is in the source), so it protects nothing: never use it on a site.
import { readFileSync } from 'node:fs';
import { MIN_COMM_KEY_BYTES } from '../codec/index.js';

/** ASCII "termsync-insecure-dev-comm-key-1" (32 bytes). INSECURE: for demos and tests only. */
export const DEV_COMM_KEY: Buffer = Buffer.from('termsync-insecure-dev-comm-key-1', 'ascii');

export class CommKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommKeyError';
  }
}

/**
 * Reads a comm key file (PROTOCOL.md 4.5). A file holding nothing but hex digits
 * (surrounding ASCII whitespace ignored) is the key in hex: an even number of
 * digits, at least 32 (16 bytes), or it is refused. Any other file is the raw
 * key bytes, one trailing LF, CR LF or CR stripped, at least 16 bytes.
 */
export function readCommKeyFile(path: string): Buffer {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (e) {
    throw new CommKeyError(`cannot read comm key file ${path}: ${(e as Error).message}`);
  }
  return parseCommKey(raw, path);
}

export function parseCommKey(raw: Buffer, where = 'comm key'): Buffer {
  // only space, tab, CR and LF are trimmed (String.trim would also take bytes such as 0xA0)
  const text = raw.toString('latin1').replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '');
  let key: Buffer;
  if (/^[0-9a-fA-F]+$/.test(text)) {
    // hex digits only: a hex key, even if it is too short or odd (a raw key made of hex digits alone is not allowed)
    if (text.length % 2 !== 0)
      throw new CommKeyError(`${where}: the comm key looks like hex but has an odd number of digits (${text.length}); a hex key has two digits per byte`);
    if (text.length < MIN_COMM_KEY_BYTES * 2)
      throw new CommKeyError(`${where}: the comm key must be at least ${MIN_COMM_KEY_BYTES} bytes (${MIN_COMM_KEY_BYTES * 2} hex digits), got ${text.length} hex digits`);
    key = Buffer.from(text, 'hex');
  } else {
    key = raw;
    if (key.length > 0 && key[key.length - 1] === 0x0a) key = key.subarray(0, key.length - 1);
    if (key.length > 0 && key[key.length - 1] === 0x0d) key = key.subarray(0, key.length - 1);
  }
  if (key.length < MIN_COMM_KEY_BYTES)
    throw new CommKeyError(`${where}: the comm key must be at least ${MIN_COMM_KEY_BYTES} bytes (or ${MIN_COMM_KEY_BYTES * 2} hex digits), got ${key.length}`);
  return Buffer.from(key);
}
