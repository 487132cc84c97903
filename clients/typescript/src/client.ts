import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import type { RecordBatch, Table } from 'apache-arrow';
import { collectTable, ipcChunks, openBatches, toTable, type TableInput } from './arrow.js';
import { PolarwayError, toPolarwayError } from './errors.js';
import { stubConstructor, type PbDatasetInfo, type PbLoadResponse, type PbQueryResponse } from './proto.js';

/** PEM text, a Buffer holding it, or a path to a PEM file. */
export type Pem = string | Buffer;

export interface TlsOptions {
  /** CA certificate(s) to trust; default: the system's roots. */
  ca?: Pem;
  /** Client certificate and key, for mutual TLS. */
  cert?: Pem;
  key?: Pem;
  /** Name to verify in the server's certificate when it differs from `host`. */
  serverName?: string;
}

export interface ClientOptions {
  /** Default "localhost". */
  host?: string;
  /** Default 50052. */
  port?: number;
  /** Milliseconds each call may take, streams included (default 30000; 0 or Infinity: none). */
  timeout?: number;
  /** Sent as `authorization: Bearer <token>`. */
  authToken?: string;
  /** `true`: TLS with the system's roots; an object: custom CA and/or a client certificate. */
  tls?: boolean | TlsOptions;
  /** How often idempotent calls are retried on UNAVAILABLE (default 3). */
  retries?: number;
  /** First retry delay in ms, doubled each time up to 5 s (default 100). */
  retryBackoff?: number;
  /** grpc-js client interceptors (logging, tracing, an `x-request-id` per call...). */
  interceptors?: grpc.Interceptor[];
}

/** Per-call options. */
export interface CallOptions {
  /** Overrides the client's timeout for this call (ms). */
  timeout?: number;
}

export interface StoreOptions extends CallOptions {
  /** Store only if the dataset does not exist; otherwise AlreadyExistsError. */
  ifAbsent?: boolean;
  /** Store only if the dataset's current version is this one; otherwise AbortedError. */
  ifVersion?: number;
}

export interface LoadOptions extends CallOptions {
  /** Only these columns, in this order (default: all). */
  columns?: string[];
  /** A retained version (default: the latest). */
  version?: number;
}

export interface Column {
  name: string;
  /** Arrow data type as the server names it, e.g. "Int64", "Timestamp(Microsecond, Some(\"UTC\"))". */
  dataType: string;
  nullable: boolean;
}

export interface DatasetInfo {
  name: string;
  version: number;
  rows: number;
  /** Size of the stored Parquet object. */
  bytes: number;
  /** Commit time, ms since the Unix epoch. */
  createdUnixMs: number;
  /** Empty in `list` results; `describe` fills it. */
  columns: Column[];
}

export interface Health {
  status: string;
  version: string;
  handleStore: string;
}

export interface CacheStats {
  hits: number;
  misses: number;
  hitRate: number;
  bytes: number;
  capacity: number;
  entries: number;
  evictions: number;
}

const MAX_MESSAGE_BYTES = 16 << 20;
const MAX_BACKOFF_MS = 5000;
export const ROUTING_KEY_HEADER = 'x-polarway-key';

type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void;
// The dynamically generated stub: each RPC is a method taking (request?, metadata, options, callback?).
type Stub = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/**
 * A client of one Polarway server (or gateway). Safe to share: calls multiplex over one HTTP/2
 * connection. Every method returns a promise (or an async iterable) and rejects with a
 * {@link PolarwayError} subclass carrying the gRPC code and the server's message.
 */
export class PolarwayClient {
  readonly address: string;
  private readonly stub: Stub;
  private readonly timeout: number;
  private readonly authToken?: string;
  private readonly retries: number;
  private readonly retryBackoff: number;

  constructor(options: ClientOptions = {}) {
    const host = options.host ?? 'localhost';
    const port = options.port ?? 50052;
    this.address = `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
    this.timeout = options.timeout ?? 30_000;
    this.authToken = options.authToken;
    this.retries = options.retries ?? 3;
    this.retryBackoff = options.retryBackoff ?? 100;

    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      // Reconnect about as fast as we retry, so a retry after a refused connection can succeed.
      'grpc.initial_reconnect_backoff_ms': Math.max(this.retryBackoff, 50),
      'grpc.max_reconnect_backoff_ms': MAX_BACKOFF_MS,
      // Large default windows: Arrow transfers are big.
      'grpc-node.flow_control_window': 8 << 20,
    };
    let credentials = grpc.credentials.createInsecure();
    if (options.tls) {
      const tls = options.tls === true ? {} : options.tls;
      if ((tls.cert === undefined) !== (tls.key === undefined)) {
        throw new PolarwayError(grpc.status.INVALID_ARGUMENT, 'tls.cert and tls.key go together (mutual TLS needs both)');
      }
      credentials = grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
      if (tls.serverName) {
        channelOptions['grpc.ssl_target_name_override'] = tls.serverName;
        channelOptions['grpc.default_authority'] = tls.serverName;
      }
    }
    const Ctor = stubConstructor();
    const clientOptions: grpc.ClientOptions = { ...channelOptions, interceptors: options.interceptors ?? [] };
    this.stub = new Ctor(this.address, credentials, clientOptions) as unknown as Stub;
  }

  /** "OK" when the server can serve. */
  async healthCheck(options?: CallOptions): Promise<string> {
    return (await this.health(options)).status;
  }

  /** Status, server version and handle store mode. */
  async health(options?: CallOptions): Promise<Health> {
    const h = await this.retrying(() => this.unary<Health>('Health', {}, '', options));
    return { status: h.status, version: h.version, handleStore: h.handleStore };
  }

  /**
   * Store `data` as the next version of `name`: an apache-arrow Table or RecordBatch, or an
   * object of columns (see README: numbers become Float64 unless given as typed arrays).
   * The Arrow IPC stream is encoded batch by batch and sent in chunks of at most 1 MiB as the
   * connection accepts them.
   */
  async store(name: string, data: TableInput, options: StoreOptions = {}): Promise<DatasetInfo> {
    const table = toTable(data);
    const res = await this.upload<{ dataset: PbDatasetInfo }>('Store', name, [{ name, table, options }], options);
    return info(res.dataset);
  }

  /** Store several datasets in one call: all are committed or none is. Results in input order. */
  async storeBatch(datasets: Record<string, TableInput> | Map<string, TableInput>, options: CallOptions = {}): Promise<DatasetInfo[]> {
    const entries = datasets instanceof Map ? [...datasets] : Object.entries(datasets);
    const items = entries.map(([name, data]) => ({ name, table: toTable(data), options: {} }));
    const res = await this.upload<{ datasets: PbDatasetInfo[] }>('StoreBatch', items[0]?.name ?? '', items, options);
    return res.datasets.map(info);
  }

  /** The whole dataset (the latest version, or `version`; all columns, or `columns`). */
  async load(name: string, options: LoadOptions = {}): Promise<Table> {
    // Retried whole: a failure before the data is complete restarts the load.
    return this.retrying(async () => readTable(await this.openLoad(name, options)));
  }

  /**
   * The dataset as record batches, decoded as chunks arrive: memory stays at about one batch
   * whatever the dataset's size. Breaking out of the loop cancels the call.
   */
  async *loadStream(name: string, options: LoadOptions = {}): AsyncGenerator<RecordBatch> {
    const stream = await this.retrying(() => this.openLoad(name, options));
    try {
      yield* await openBatches(ipcOf(stream.messages));
    } catch (e) {
      throw toPolarwayError(e);
    } finally {
      stream.cancel(); // a consumer that left early must not leave the call open
    }
  }

  /** Run DuckDB SQL over stored datasets (tables by name) and the data dir's Parquet files. */
  async query(sql: string, options: CallOptions = {}): Promise<Table> {
    return this.retrying(async () => {
      return readTable(await this.openServerStream<PbQueryResponse>('Query', { sql }, firstTable(sql), options));
    });
  }

  /** Run SQL and keep the result on the server as dataset `into` (a new version of it). */
  async queryInto(sql: string, into: string, options: CallOptions = {}): Promise<DatasetInfo> {
    // Not retried: it creates a version.
    const { messages } = await this.openServerStream<PbQueryResponse>('Query', { sql, into }, into, options);
    let stored: PbDatasetInfo | undefined;
    for await (const m of messages) stored = m.stored ?? stored; // read to the end: the call's status
    if (!stored) throw new PolarwayError(grpc.status.INTERNAL, 'the server did not describe the stored result');
    return info(stored);
  }

  /** Datasets whose names start with `prefix` (all by default), sorted by name. */
  async list(prefix = '', options?: CallOptions): Promise<DatasetInfo[]> {
    const res = await this.retrying(() => this.unary<{ datasets: PbDatasetInfo[] }>('List', { prefix }, '', options));
    return res.datasets.map(info);
  }

  /** Version, rows, bytes, schema and creation time of the latest version (or `version`). */
  async describe(name: string, options: { version?: number } & CallOptions = {}): Promise<DatasetInfo> {
    const req = options.version === undefined ? { name } : { name, version: options.version };
    return info(await this.retrying(() => this.unary<PbDatasetInfo>('Describe', req, name, options)));
  }

  /** Delete every version of `name`; returns the version that was current. */
  async delete(name: string, options?: CallOptions): Promise<number> {
    return (await this.unary<{ version: number }>('Delete', { name }, name, options)).version;
  }

  /** The server's read-through cache counters (a newer server's extra counters come along too). */
  async cacheStats(options?: CallOptions): Promise<CacheStats> {
    return this.retrying(() => this.unary<CacheStats>('CacheStats', {}, '', options));
  }

  /** Close the connection; calls in flight are cancelled. */
  close(): void {
    this.stub.close();
  }

  // --- plumbing ---

  private metadata(key: string): grpc.Metadata {
    const md = new grpc.Metadata();
    if (key) md.set(ROUTING_KEY_HEADER, key);
    if (this.authToken) md.set('authorization', `Bearer ${this.authToken}`);
    return md;
  }

  private callOptions(options?: CallOptions): grpc.CallOptions {
    const timeout = options?.timeout ?? this.timeout;
    return timeout > 0 && Number.isFinite(timeout) ? { deadline: Date.now() + timeout } : {};
  }

  private unary<T>(method: string, req: object, key: string, options?: CallOptions): Promise<T> {
    return new Promise((resolve, reject) => {
      const cb: Callback<T> = (err, value) => (err ? reject(toPolarwayError(err)) : resolve(value as T));
      this.stub[method](req, this.metadata(key), this.callOptions(options), cb);
    });
  }

  /** Run an idempotent call, retrying on UNAVAILABLE with exponential backoff. */
  private async retrying<T>(call: () => Promise<T>): Promise<T> {
    let delay = this.retryBackoff;
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (e) {
        const err = toPolarwayError(e);
        if (err.code !== grpc.status.UNAVAILABLE || attempt >= this.retries) throw err;
        await sleep(delay);
        delay = Math.min(delay * 2, MAX_BACKOFF_MS);
      }
    }
  }

  private openLoad(name: string, options: LoadOptions): Promise<ServerStream<PbLoadResponse>> {
    const req: Record<string, unknown> = { name, columns: options.columns ?? [] };
    if (options.version !== undefined) req.version = options.version;
    return this.openServerStream<PbLoadResponse>('Load', req, name, options);
  }

  /**
   * Start a server-streaming call and wait for its first message, so that a failure to start
   * (e.g. UNAVAILABLE, NOT_FOUND) rejects here, where it can be retried. A consumer that stops
   * reading early must call `cancel`.
   */
  private async openServerStream<T>(method: string, req: object, key: string, options?: CallOptions): Promise<ServerStream<T>> {
    const call = this.stub[method](req, this.metadata(key), this.callOptions(options)) as grpc.ClientReadableStream<T>;
    const it = call[Symbol.asyncIterator]() as AsyncIterator<T>;
    let first: IteratorResult<T>;
    try {
      first = await it.next();
    } catch (e) {
      call.cancel();
      throw toPolarwayError(e);
    }
    const messages = (async function* () {
      try {
        if (!first.done) yield first.value;
        for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
      } catch (e) {
        throw toPolarwayError(e);
      }
    })();
    return { messages, cancel: () => call.cancel() };
  }

  /** A client-streaming upload: for each item a header, then its IPC chunks, with backpressure. */
  private async upload<T>(
    method: 'Store' | 'StoreBatch',
    key: string,
    items: { name: string; table: Table; options: StoreOptions }[],
    options: CallOptions,
  ): Promise<T> {
    let settled = false;
    let call!: grpc.ClientWritableStream<object>;
    const result = new Promise<T>((resolve, reject) => {
      const cb: Callback<T> = (err, value) => {
        settled = true;
        err ? reject(toPolarwayError(err)) : resolve(value as T);
      };
      call = this.stub[method](this.metadata(key), this.callOptions(options), cb) as grpc.ClientWritableStream<object>;
    });
    result.catch(() => {}); // observed below; avoid an unhandled rejection while still writing
    // Resolves when the stream can take more, or when the call has ended (then we stop writing).
    const writable = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          call.off('drain', done);
          resolve();
        };
        call.on('drain', done);
        result.then(done, done);
      });
    try {
      for (const { name, table, options: o } of items) {
        const condition =
          o.ifAbsent ? { ifAbsent: true } : o.ifVersion !== undefined ? { ifVersion: o.ifVersion } : undefined;
        if (!call.write({ header: condition ? { name, condition } : { name } })) await writable();
        for await (const chunk of ipcChunks(table)) {
          if (settled) break;
          if (!call.write({ ipc: chunk })) await writable();
        }
        if (settled) break;
      }
      call.end();
    } catch (e) {
      // Encoding failed on our side: abandon the call, nothing is committed.
      if (!settled) {
        call.cancel();
        throw new PolarwayError(grpc.status.INVALID_ARGUMENT, `cannot encode the data as Arrow IPC: ${(e as Error).message}`, { cause: e });
      }
    }
    return result;
  }
}

function pem(value: Pem | undefined): Buffer | null {
  if (value === undefined) return null;
  if (Buffer.isBuffer(value)) return value;
  return value.includes('-----BEGIN') ? Buffer.from(value) : readFileSync(value);
}

function info(d: PbDatasetInfo): DatasetInfo {
  return {
    name: d.name,
    version: d.version,
    rows: d.rows,
    bytes: d.bytes,
    createdUnixMs: d.createdUnixMs,
    columns: (d.columns ?? []).map((c) => ({ name: c.name, dataType: c.dataType, nullable: c.nullable })),
  };
}

/** A server-streaming call's messages, and a way to end it early. */
interface ServerStream<T> {
  messages: AsyncGenerator<T>;
  cancel(): void;
}

async function* ipcOf(messages: AsyncIterable<{ ipc: Buffer }>): AsyncGenerator<Uint8Array> {
  for await (const m of messages) if (m.ipc.byteLength > 0) yield m.ipc;
}

/** The whole IPC stream of a Load or Query as a Table; the call never outlives this. */
async function readTable(stream: ServerStream<{ ipc: Buffer }>): Promise<Table> {
  try {
    return await collectTable(ipcOf(stream.messages));
  } catch (e) {
    throw toPolarwayError(e);
  } finally {
    stream.cancel();
  }
}

/**
 * The routing key of a query: the first table it reads (`FROM name`), so a gateway sends it where
 * that dataset is cached. Empty when it reads from a function or a path first.
 */
export function firstTable(sql: string): string {
  const m = /(?:^|\s)from\s+("([^"]+)"|[A-Za-z0-9_.-]+)\s*(\()?/i.exec(sql);
  if (!m || m[3]) return '';
  return m[2] ?? m[1];
}
