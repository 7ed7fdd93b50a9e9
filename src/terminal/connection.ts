// Moved to src/drivers/termsync/connection.ts; this re-export stays only until
// the session manager moves there too.
export * from '../drivers/termsync/connection.js';
