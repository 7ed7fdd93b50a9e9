// The ZK protocol (ZKTeco standalone terminals, TCP 4370) as a driver of the
// sync engine's port (src/sync/ports.ts): codec, client, record mapping, change
// detection, the DeviceSession and the driver that dials.
export { zkDriver, parseZkPassword, DEFAULT_ZK_POLL_SEC, type ZkDriverOptions } from './driver.js';
export { ZkSession, PROTOCOL as ZK_PROTOCOL, ZK_MAX_BATCH, zkReason, type ZkDriverMemory } from './session.js';
export { ZK_PARTS } from './mapping.js';
