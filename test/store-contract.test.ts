// The SiteStore contract (test/helpers/store-contract.ts) for the SQLite backend.
import { SqliteSiteStore } from '../src/store/sqlite-backend.js';
import { describeStoreContract } from './helpers/store-contract.js';
import { openTemp } from './store-fixtures.js';

describeStoreContract('sqlite', async () => {
  const t = openTemp();
  return { store: new SqliteSiteStore(t.store), close: async () => t.close() };
});
