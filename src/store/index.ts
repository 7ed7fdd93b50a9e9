export { Store } from './store.js';
export { StoreWriteError, classifySqliteCode, toStoreWriteError, type StoreWriteErrorCode } from './errors.js';
export { MIGRATIONS, LATEST_SCHEMA_VERSION, SchemaVersionError, migrate, schemaVersion, type Migration } from './migrations.js';
export type { UserIndexEntry } from './users.js';
export type { PullFailure, PullFailureQuery } from './pull-failures.js';
export * from './types.js';
