// Loads termsync's own .proto subset of the device gateway's interface
// (./proto/*.proto, shipped beside this module in dist/ too) and describes the
// messages termsync reads and writes as TypeScript types. Loaded with the
// names as written (keepCase), 64-bit numbers as JS numbers, defaults filled
// and repeated fields as arrays: a field the gateway leaves out reads as its
// zero value. Fields a newer gateway sends that the subset does not name are
// skipped by the decoder.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_FILES = ['connect.proto', 'event.proto', 'user.proto', 'device.proto'] as const;

/** The folder holding the .proto files: beside this module (src/ under tsx, dist/ once built). */
export function protoDir(): string {
  const dir = fileURLToPath(new URL('./proto/', import.meta.url));
  if (!existsSync(dir)) throw new Error(`the G-SDK .proto files are missing: ${dir} (a build copies them from src/drivers/gsdk/proto)`);
  return dir;
}

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: Number, defaults: true, arrays: true, oneofs: true };

export interface GsdkServices {
  Connect: grpc.ServiceClientConstructor;
  Event: grpc.ServiceClientConstructor;
  User: grpc.ServiceClientConstructor;
  Device: grpc.ServiceClientConstructor;
}

let cached: GsdkServices | undefined;

/** The four services of the subset (loaded once). */
export function gsdkServices(): GsdkServices {
  if (cached) return cached;
  const dir = protoDir();
  const def = protoLoader.loadSync(
    PROTO_FILES.map((f) => dir + f),
    LOADER_OPTIONS,
  );
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const pkg = grpc.loadPackageDefinition(def) as any;
  cached = { Connect: pkg.connect.Connect, Event: pkg.event.Event, User: pkg.user.User, Device: pkg.device.Device };
  return cached;
}

// ------------------------------------------------------------------ messages

export interface AsyncConnectInfo {
  deviceID: number;
  IPAddr: string;
  port: number;
  useSSL: boolean;
}

export interface AcceptFilter {
  allowAll: boolean;
  deviceIDs: number[];
  IPAddrs: string[];
  subnetMasks: string[];
}

export interface DeviceInfo {
  deviceID: number;
  connectionMode: number;
  IPAddr: string;
  port: number;
  status: number;
  autoReconnect: boolean;
  useSSL: boolean;
}

export interface StatusChange {
  deviceID: number;
  status: number;
  timestamp: number;
}

export interface EventLog {
  ID: number;
  timestamp: number;
  deviceID: number;
  userID: string;
  entityID: number;
  eventCode: number;
  subCode: number;
  TNAKey: number;
  hasImage: boolean;
  changedOnDevice: boolean;
}

export interface UserHdr {
  ID: string;
  numOfCard: number;
  numOfFinger: number;
  numOfFace: number;
  authGroupID: number;
}

export interface UserSettingMsg {
  startTime: number;
  endTime: number;
  fingerAuthMode: number;
  cardAuthMode: number;
  IDAuthMode: number;
  securityLevel: number;
}

export interface CSNCardData {
  type: number;
  size: number;
  data: Buffer;
}

export interface FingerData {
  index: number;
  flag: number;
  templates: Buffer[];
}

export interface UserInfo {
  hdr: UserHdr;
  setting: UserSettingMsg;
  name: string;
  cards: CSNCardData[];
  fingers: FingerData[];
  accessGroupIDs: number[];
  PIN: Buffer;
  photo: Buffer;
}

export interface ErrorResponse {
  deviceID: number;
  code: number;
  msg: string;
}

export interface FactoryInfo {
  deviceID: number;
  MACAddr: string;
  modelName: string;
  firmwareVersion: string;
  kernelVersion: string;
  BSCoreVersion: string;
  boardVersion: string;
}

export interface CapabilityInfo {
  type: number;
  maxNumOfUser: number;
  PINSupported: boolean;
  cardSupported: boolean;
  fingerSupported: boolean;
  faceSupported: boolean;
  userNameSupported: boolean;
  alphanumericIDSupported: boolean;
}
