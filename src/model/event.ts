/** One 48-byte event-log record (PROTOCOL.md section 6.1). */
export interface EventRecord {
  id: number;
  dateTime: number;
  deviceId: number;
  userId: string; // '' for non-user events
  code: number;
  param: number; // 1 = made on the device, 0 = from the server
  flags: number;
}
