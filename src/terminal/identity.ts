// What a dial-in terminal's device ID is bound to. The comm-key handshake
// proves only that the peer holds the key it was checked with; with one site
// key shared by every terminal, any holder of that key can claim any device
// ID. So when a device ID is first recorded (and again when an administrator
// approves a held session) the daemon records the strongest credential the
// session presented, and later sessions for that ID must present the same:
//   key      the device has a comm key of its own (--terminal-key): the
//            handshake itself proves the identity; nothing else is needed
//   cert     a TLS client certificate verified against --tls-ca: its SHA-256
//            fingerprint is recorded
//   address  only the site key: the source address is recorded, widened to a
//            prefix (--identity-prefix-v4 / -v6) for sites with dynamic addresses
// A session that does not match is held pending (no sync, no pushes) and
// recorded; approving it re-binds the ID to what it presented.
import { isIP } from 'node:net';

export type IdentityBinding = { kind: 'key' } | { kind: 'cert'; sha256: string } | { kind: 'address'; net: string };

/** What an authenticated dial-in session presented besides the comm-key proof. */
export interface PeerCredential {
  /** "address:port" */
  remote: string;
  /** the source address, IPv4-mapped IPv6 addresses given as IPv4 */
  address: string;
  /** SHA-256 (hex) of a TLS client certificate the listener verified, else null */
  certSha256: string | null;
}

export interface Cidr {
  family: 4 | 6;
  bytes: Buffer;
  bits: number;
}

/** `::ffff:10.0.0.1` -> `10.0.0.1`; other addresses unchanged. */
export function plainAddress(addr: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  return m ? m[1] : addr;
}

function addressBytes(addr: string): Buffer | null {
  const a = plainAddress(addr);
  const fam = isIP(a);
  if (fam === 4) return Buffer.from(a.split('.').map(Number));
  if (fam !== 6) return null;
  // expand "::" and an embedded IPv4 tail
  let text = a.split('%')[0];
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4tail) {
    const b = v4tail[1].split('.').map(Number);
    text = text.slice(0, -v4tail[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) return null;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return out;
}

/** `10.1.0.0/16`, `fd00::/8`, or a bare address (a /32 or /128). Undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const [addr, bitsText, extra] = text.trim().split('/');
  if (extra !== undefined) return undefined;
  const bytes = addressBytes(addr);
  if (!bytes) return undefined;
  const family = bytes.length === 4 ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  if (bitsText !== undefined && !/^\d{1,3}$/.test(bitsText)) return undefined;
  const bits = bitsText === undefined ? max : Number(bitsText);
  if (bits > max) return undefined;
  return { family, bytes, bits };
}

export function inCidr(addr: string, c: Cidr): boolean {
  const b = addressBytes(addr);
  if (!b || b.length !== c.bytes.length) return false;
  let bits = c.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((b[i] & mask) !== (c.bytes[i] & mask)) return false;
  }
  return true;
}

/** The network of `addr` with `bits` leading bits, as text (`10.0.0.0/24`). */
export function networkOf(addr: string, bits: number): string {
  const b = addressBytes(addr);
  if (!b) return `${addr}/${bits}`;
  const out = Buffer.alloc(b.length);
  let left = bits;
  for (let i = 0; i < b.length && left > 0; i++, left -= 8) out[i] = b[i] & (left >= 8 ? 0xff : (0xff << (8 - left)) & 0xff);
  if (b.length === 4) return `${[...out].join('.')}/${bits}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(out.readUInt16BE(i).toString(16));
  return `${groups.join(':')}/${bits}`;
}

export interface BindingPolicy {
  /** prefix length an address binding covers (default 32 / 64) */
  prefixV4?: number;
  prefixV6?: number;
}

/** The binding a session's credential would establish: own key, else certificate, else address. */
export function bindingFor(peer: PeerCredential, ownKey: boolean, p: BindingPolicy = {}): IdentityBinding {
  if (ownKey) return { kind: 'key' };
  if (peer.certSha256) return { kind: 'cert', sha256: peer.certSha256 };
  const v4 = isIP(plainAddress(peer.address)) === 4;
  return { kind: 'address', net: networkOf(peer.address, v4 ? (p.prefixV4 ?? 32) : (p.prefixV6 ?? 64)) };
}

export function bindingMatches(b: IdentityBinding, peer: PeerCredential, ownKey: boolean): boolean {
  switch (b.kind) {
    case 'key':
      return ownKey;
    case 'cert':
      return peer.certSha256 === b.sha256;
    case 'address': {
      const c = parseCidr(b.net);
      return c !== undefined && inCidr(peer.address, c);
    }
  }
}

export function describeBinding(b: IdentityBinding): string {
  return b.kind === 'key' ? 'its own comm key' : b.kind === 'cert' ? `client certificate sha256 ${b.sha256.slice(0, 16)}…` : `source address in ${b.net}`;
}

export function parseBinding(json: string | null): IdentityBinding | null {
  if (!json) return null;
  try {
    const b = JSON.parse(json) as IdentityBinding;
    if (b.kind === 'key' || (b.kind === 'cert' && typeof b.sha256 === 'string') || (b.kind === 'address' && typeof b.net === 'string')) return b;
  } catch {
    // an unreadable binding binds nothing: the next session re-binds (logged)
  }
  return null;
}
