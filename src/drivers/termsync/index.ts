// The termsync protocol as one driver among others (src/sync/ports.ts): the
// handshake both ends share, the mapping of its codes to domain facts and
// reasons, the DeviceSession adapter, and the driver that dials.
export * from './handshake.js';
export * from './mapping.js';
export { PROTOCOL, TermsyncSession, driverError } from './session.js';
export { termsyncDriver, sessionOf, type TermsyncDriverOptions } from './driver.js';
