// The admin API, status page and operator console of a daemon on PostgreSQL:
// the same server as one daemon's (src/admin/server.ts: the same routes,
// token, browser protections and connection limits), over the cluster's admin
// port (src/cluster/admin-site.ts), so any daemon shows the whole site with
// the daemon that drives each terminal, and a write on any daemon is pushed
// by the daemons that hold the terminals in scope.
import type { Logger } from 'pino';
import { startAdmin, type AdminOptions } from '../admin/server.js';
import { ClusterAdminSite } from './admin-site.js';
import type { ClusterNode } from './node.js';

export interface ClusterAdmin {
  port: number;
  close(): Promise<void>;
}

export type ClusterAdminOptions = Omit<AdminOptions, 'site' | 'daemon' | 'backupDir'> & {
  node: ClusterNode;
  log: Logger;
  /** how often the stored sync mode is read, to follow a change made through another daemon (ms; default 1000) */
  syncModePollMs?: number;
};

export async function startClusterAdmin(o: ClusterAdminOptions): Promise<ClusterAdmin> {
  const { node, syncModePollMs, ...rest } = o;
  const site = new ClusterAdminSite({ node, log: o.log, syncModePollMs });
  try {
    const server = await startAdmin({ ...rest, site });
    return { port: server.port, close: () => server.close() };
  } catch (e) {
    site.close();
    throw e;
  }
}
