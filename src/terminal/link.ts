// Moved to src/drivers/termsync/protocol-link.ts; this re-export stays only
// until the session manager moves there too.
export * from '../drivers/termsync/protocol-link.js';
