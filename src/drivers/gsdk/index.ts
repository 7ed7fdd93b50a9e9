export { gsdkDriver, gsdkTerminalId, gsdkDeviceIdOf, type GsdkDriver, type GsdkDriverOptions } from './driver.js';
export { GsdkSession, PROTOCOL as GSDK_PROTOCOL } from './session.js';
export { GSDK_PARTS, gsdkToUser, userToGsdk } from './mapping.js';
export { GSDK_GATEWAY_PORT, GSDK_DEVICE_PORT, EventCode, DeviceStatus } from './constants.js';
