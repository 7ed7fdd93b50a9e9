// A throwaway PKI for TLS tests, made with the `openssl` command at test time
// (EC P-256 keys: fast). Two CAs; certificates for the terminal's listener, the
// daemon's listener and both sides' client certificates; an expired one of
// each kind; and ones signed by the wrong CA.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';

export interface CertKey {
  cert: Buffer;
  key: Buffer;
  /** SHA-256 fingerprint of the DER certificate, as "AB:CD:..." */
  fingerprint: string;
}

export interface Pki {
  ca: Buffer;
  otherCa: Buffer;
  /** server certificates (SAN IP:127.0.0.1, DNS:localhost) */
  server: CertKey;
  serverExpired: CertKey;
  serverOtherCa: CertKey;
  /** a second valid server certificate from the right CA (for a pin that must not match) */
  serverSibling: CertKey;
  /** client certificates */
  client: CertKey;
  clientExpired: CertKey;
  clientOtherCa: CertKey;
  cleanup(): void;
}

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-pki-'));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = (name: string) => run('req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '3', '-subj', `/CN=termsync test ${name}`);
  ca('ca');
  ca('otherca');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  let serial = 1;
  const leaf = (name: string, kind: 'server' | 'client', signer: string, days: number): CertKey => {
    run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    // -days -1: notAfter lies in the past (an expired certificate)
    run('x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.pem`, '-CAkey', `${signer}.key`, '-set_serial', String(serial++), '-days', String(days), '-extfile', `${kind}.ext`, '-out', `${name}.pem`);
    const cert = readFileSync(join(dir, `${name}.pem`));
    return { cert, key: readFileSync(join(dir, `${name}.key`)), fingerprint: new X509Certificate(cert).fingerprint256 };
  };
  const pki: Pki = {
    ca: readFileSync(join(dir, 'ca.pem')),
    otherCa: readFileSync(join(dir, 'otherca.pem')),
    server: leaf('server', 'server', 'ca', 2),
    serverExpired: leaf('server-expired', 'server', 'ca', -1),
    serverOtherCa: leaf('server-otherca', 'server', 'otherca', 2),
    serverSibling: leaf('server-sibling', 'server', 'ca', 2),
    client: leaf('client', 'client', 'ca', 2),
    clientExpired: leaf('client-expired', 'client', 'ca', -1),
    clientOtherCa: leaf('client-otherca', 'client', 'otherca', 2),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  return pki;
}
