// Numbers of the device gateway's interface that termsync acts on.

/** The gateway's gRPC port (TLS only). */
export const GSDK_GATEWAY_PORT = 4000;
/** The port a terminal listens on when the gateway dials it (server-to-device mode). */
export const GSDK_DEVICE_PORT = 51211;

/** Connection status of a terminal behind the gateway (StatusChange.status, DeviceInfo.status). */
export const DeviceStatus = {
  DISCONNECTED: 0,
  TCP_CONNECTED: 1,
  TLS_CONNECTED: 2,
  TCP_CANNOT_CONNECT: 0x100,
  TCP_NOT_ALLOWED: 0x101,
  TLS_CANNOT_CONNECT: 0x200,
  TLS_NOT_ALLOWED: 0x201,
} as const;

export function isConnected(status: number): boolean {
  return status === DeviceStatus.TCP_CONNECTED || status === DeviceStatus.TLS_CONNECTED;
}

export function statusName(status: number): string {
  for (const [k, v] of Object.entries(DeviceStatus)) if (v === status) return k;
  return `0x${status.toString(16)}`;
}

/** Event codes termsync acts on; compared after masking with EVENT_MASK (the low byte is a variant). */
export const EventCode = {
  USER_ENROLL_SUCCESS: 0x2000,
  USER_ENROLL_FAIL: 0x2100,
  USER_UPDATE_SUCCESS: 0x2200,
  USER_UPDATE_FAIL: 0x2300,
  USER_DELETE_SUCCESS: 0x2400,
  USER_DELETE_FAIL: 0x2500,
  USER_DELETE_ALL_SUCCESS: 0x2600,
  USER_ISSUE_AOC_SUCCESS: 0x2700,
  USER_DUPLICATE_CREDENTIAL: 0x2800,
  IDENTIFY_SUCCESS: 0x1300,
} as const;

/** The terminal's database was reset (compared whole: other 0x45xx codes are other device events). */
export const DATABASE_RESET = 0x4501;

export const EVENT_MASK = 0xff00;

export function eventName(code: number): string {
  if (code === DATABASE_RESET) return 'DATABASE_RESET';
  const c = code & EVENT_MASK;
  for (const [k, v] of Object.entries(EventCode)) if (v === c) return k;
  return `EVENT_0x${code.toString(16).padStart(4, '0')}`;
}

/** GetPartial's infoMask bits. */
export const InfoMask = { HDR: 0x1, SETTING: 0x2, NAME: 0x4, PHOTO: 0x8, PIN: 0x10, CARD: 0x20, FINGER: 0x40, FACE: 0x80, ACCESS_GROUP: 0x100, JOB: 0x200, ALL: 0xffff } as const;

/** The card size a CSNCardData carries (the data is always this long). */
export const CARD_DATA_SIZE = 32;
/** The length of a finger template on the terminal. */
export const FINGER_TEMPLATE_SIZE = 384;
