import { status, type ServiceError } from '@grpc/grpc-js';

/** Any failure of a Polarway call. `code` is the gRPC status code (`@grpc/grpc-js` `status`). */
export class PolarwayError extends Error {
  readonly code: status;
  /** The server's message (or the client's, for errors found before sending). */
  readonly details: string;

  constructor(code: status, details: string, options?: { cause?: unknown }) {
    super(`${status[code] ?? code}: ${details}`, options);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

/** Bad dataset name, malformed Arrow, bad SQL, or input the client cannot encode. */
export class InvalidArgumentError extends PolarwayError {}
/** No such dataset, version or column. */
export class NotFoundError extends PolarwayError {}
/** `ifAbsent` failed: the dataset exists. */
export class AlreadyExistsError extends PolarwayError {}
/** `ifVersion` failed: the dataset's current version is another one. */
export class AbortedError extends PolarwayError {}
/** The SQL sandbox refused a statement (COPY, ATTACH, INSTALL, SET, files outside the data dir...). */
export class PermissionDeniedError extends PolarwayError {}
/** Missing or wrong token. */
export class UnauthenticatedError extends PolarwayError {}
/** A size, memory or concurrency limit. */
export class ResourceExhaustedError extends PolarwayError {}
/** The server cannot be reached or cannot serve now; idempotent calls retry these. */
export class UnavailableError extends PolarwayError {}
/** The call's timeout (or the server's query timeout) passed. */
export class DeadlineExceededError extends PolarwayError {}

const byCode = new Map<status, new (code: status, details: string, options?: { cause?: unknown }) => PolarwayError>([
  [status.INVALID_ARGUMENT, InvalidArgumentError],
  [status.NOT_FOUND, NotFoundError],
  [status.ALREADY_EXISTS, AlreadyExistsError],
  [status.ABORTED, AbortedError],
  [status.PERMISSION_DENIED, PermissionDeniedError],
  [status.UNAUTHENTICATED, UnauthenticatedError],
  [status.RESOURCE_EXHAUSTED, ResourceExhaustedError],
  [status.UNAVAILABLE, UnavailableError],
  [status.DEADLINE_EXCEEDED, DeadlineExceededError],
]);

/** The typed error for a status code. */
export function errorFor(code: status, details: string, cause?: unknown): PolarwayError {
  const Cls = byCode.get(code) ?? PolarwayError;
  return new Cls(code, details, cause === undefined ? undefined : { cause });
}

// grpc-js decodes the percent-encoded grpc-message with decodeURI, which leaves the reserved
// characters encoded ("Did you mean ...%3F"); decode those too.
function unescapeReserved(details: string): string {
  return details.replace(/%(2[346BCF]|3[ABDF]|40)/gi, (m) => decodeURIComponent(m));
}

function isServiceError(e: unknown): e is ServiceError {
  return e instanceof Error && typeof (e as ServiceError).code === 'number' && 'details' in e;
}

/** Turn whatever a call threw into a PolarwayError (gRPC errors keep their code and message). */
export function toPolarwayError(e: unknown): PolarwayError {
  if (e instanceof PolarwayError) return e;
  if (isServiceError(e)) return errorFor(e.code, unescapeReserved(e.details || e.message), e);
  // Arrow decoding/encoding failures and the like: the data was not what it should be.
  const message = e instanceof Error ? e.message : String(e);
  return new PolarwayError(status.INTERNAL, message, { cause: e });
}
