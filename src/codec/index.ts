// The codec's public surface: import from '../codec/index.js'.
export * from './constants.js';
export * from './errors.js';
export * from './frame.js';
export * from './auth.js';
export { readChar, writeChar, readUserId, writeUserId } from './text.js';
export * from './events.js';
export * from './user.js';
export * from './payloads.js';
