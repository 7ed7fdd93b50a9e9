// Handshake proofs (PROTOCOL.md 4.1): HMAC-SHA-256 keyed with the comm key over
// label ‖ nonceA ‖ nonceB ‖ deviceId (u32 LE). The key never crosses the wire.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { NONCE_BYTES, PROOF_BYTES } from './constants.js';

/** The comm key must hold at least this many bytes (PROTOCOL.md 4.1). */
export const MIN_COMM_KEY_BYTES = 16;

/**
 * proofS = computeProof(K, PROOF_LABEL_SERVER, nonceT, nonceS, deviceId)
 * proofT = computeProof(K, PROOF_LABEL_TERMINAL, nonceS, nonceT, deviceId)
 */
export function computeProof(key: Buffer, label: string, nonceA: Buffer, nonceB: Buffer, deviceId: number): Buffer {
  if (key.length < MIN_COMM_KEY_BYTES) throw new RangeError(`comm key must be at least ${MIN_COMM_KEY_BYTES} bytes`);
  if (nonceA.length !== NONCE_BYTES || nonceB.length !== NONCE_BYTES) throw new RangeError(`nonces must be ${NONCE_BYTES} bytes`);
  if (!Number.isInteger(deviceId) || deviceId < 0 || deviceId > 0xffffffff) throw new RangeError('deviceId must be a u32');
  const id = Buffer.alloc(4);
  id.writeUInt32LE(deviceId, 0);
  return createHmac('sha256', key).update(Buffer.from(label, 'ascii')).update(nonceA).update(nonceB).update(id).digest();
}

/** Constant-time comparison of two proofs; false (not an exception) on any length mismatch. */
export function proofEquals(a: Buffer, b: Buffer): boolean {
  if (a.length !== PROOF_BYTES || b.length !== PROOF_BYTES) return false;
  return timingSafeEqual(a, b);
}
