// @polarway/client: store Arrow tables by name on a Polarway server, load them back (whole or
// streamed), run SQL. See README.md.
export {
  PolarwayClient,
  firstTable,
  ROUTING_KEY_HEADER,
  type CacheStats,
  type CallOptions,
  type ClientOptions,
  type Column,
  type DatasetInfo,
  type Health,
  type LoadOptions,
  type Pem,
  type StoreOptions,
  type TlsOptions,
} from './client.js';
export { toTable, toVector, CHUNK_BYTES, type ColumnInput, type TableInput } from './arrow.js';
export {
  PolarwayError,
  InvalidArgumentError,
  NotFoundError,
  AlreadyExistsError,
  AbortedError,
  PermissionDeniedError,
  UnauthenticatedError,
  ResourceExhaustedError,
  UnavailableError,
  DeadlineExceededError,
} from './errors.js';
export { status } from '@grpc/grpc-js';
