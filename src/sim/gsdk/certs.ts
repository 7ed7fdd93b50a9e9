// A throwaway CA and a gateway certificate for the mock device gateway, made
// with the `openssl` command (EC P-256: fast), as `device-gateway -c` makes
// the real gateway's: the client trusts the CA file.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface GatewayCerts {
  /** the CA a client trusts (PEM) */
  ca: Buffer;
  /** the gateway's certificate (SAN IP:127.0.0.1, DNS:localhost) and key */
  cert: Buffer;
  key: Buffer;
  /** another CA, which did not sign the gateway's certificate (for refusal tests) */
  otherCa: Buffer;
}

export function makeGatewayCerts(): GatewayCerts {
  const dir = mkdtempSync(join(tmpdir(), 'termsync-gsdk-ca-'));
  try {
    const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3', '-subj', '/CN=termsync mock gateway CA');
    run('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.pem', '-days', '3', '-subj', '/CN=termsync other CA');
    writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    run('req', ...ec, '-keyout', 'gw.key', '-out', 'gw.csr', '-subj', '/CN=device-gateway');
    run('x509', '-req', '-in', 'gw.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '1', '-days', '2', '-extfile', 'server.ext', '-out', 'gw.pem');
    return {
      ca: readFileSync(join(dir, 'ca.pem')),
      cert: readFileSync(join(dir, 'gw.pem')),
      key: readFileSync(join(dir, 'gw.key')),
      otherCa: readFileSync(join(dir, 'other.pem')),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
