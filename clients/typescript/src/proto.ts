// The polarway.v1 service, loaded at run time from the package's copy of proto/ (kept identical to
// the repository's proto/ by a test), so there is no generated code to keep fresh.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_PATH = fileURLToPath(new URL('../proto/polarway/v1/polarway.proto', import.meta.url));

/** The generated service client constructor (methods Health, Store, StoreBatch, Load, ...). */
export type PolarwayStubCtor = grpc.ServiceClientConstructor;

let ctor: PolarwayStubCtor | undefined;

export function stubConstructor(): PolarwayStubCtor {
  if (!ctor) {
    const definition = protoLoader.loadSync(PROTO_PATH, {
      keepCase: false, // createdUnixMs, dataType, hitRate, handleStore
      longs: Number, // uint64 counters as JS numbers (exact below 2^53)
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      polarway: { v1: { Polarway: PolarwayStubCtor } };
    };
    ctor = pkg.polarway.v1.Polarway;
  }
  return ctor;
}

// Message shapes as proto-loader decodes them with the options above.
export interface PbColumn {
  name: string;
  dataType: string;
  nullable: boolean;
}
export interface PbDatasetInfo {
  name: string;
  version: number;
  rows: number;
  bytes: number;
  createdUnixMs: number;
  columns: PbColumn[];
}
export interface PbLoadResponse {
  dataset?: PbDatasetInfo | null;
  ipc: Buffer;
}
export interface PbQueryResponse {
  ipc: Buffer;
  stored?: PbDatasetInfo | null;
}
