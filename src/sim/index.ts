// The simulator's public surface.
export { Simulator, parseHostPort, DEFAULT_DEVICE_ID_BASE, type SimulatorOptions, type HostPort } from './simulator.js';
export {
  SimTerminal,
  SharedUsers,
  SimActionError,
  SIM_MODEL,
  SIM_FIRMWARE,
  DEFAULT_USER_CAPACITY,
  DEFAULT_LOG_CAPACITY,
  DEFAULT_MAX_USERS_PER_BATCH,
  type SimTerminalOptions,
  type UserPatch,
} from './terminal.js';
export { SimSession, DEFAULT_HEARTBEAT_SEC, IDLE_HEARTBEATS, MAX_EVENTS_PER_PUSH } from './session.js';
export { EventRing, newLogEpoch } from './ring.js';
export { DEFAULT_TIMING, ZERO_TIMING, resolveTiming, type TimingModel } from './timing.js';
export { startControlServer, userJson, eventJson, MAX_BODY_BYTES, type ControlServer } from './control.js';
export { runScenario, scenarioUser, type ScenarioOptions, type ScenarioResult, type ScenarioSpread } from './scenario.js';
export { DEV_COMM_KEY, readCommKeyFile, parseCommKey, CommKeyError } from './devkey.js';
export type { SimTlsOptions, ReconnectOptions } from './endpoint.js';
export { simCommand } from './cli.js';
