// Arrow side of the wire: plain columns -> Table, Table -> IPC stream chunks, chunks -> batches.
import {
  Binary,
  Bool,
  DataType,
  Field,
  List,
  Null,
  Schema,
  Struct,
  Float64,
  Int64,
  RecordBatch,
  RecordBatchReader,
  RecordBatchStreamWriter,
  Table,
  TimestampMillisecond,

  Utf8,
  Vector,
  makeVector,
  vectorFromArray,
} from 'apache-arrow';
import { status } from '@grpc/grpc-js';
import { InvalidArgumentError } from './errors.js';

/** Senders keep IPC chunks at or under 1 MiB (the server refuses chunks over 4 MiB). */
export const CHUNK_BYTES = 1 << 20;

/** A column given as a plain value: an Arrow Vector, a typed array, or a JS array. */
export type ColumnInput = Vector | ArrayLike<unknown> | ArrayBufferView;

/** What `store` accepts: an Arrow Table or RecordBatch, or an object of named columns. */
export type TableInput = Table | RecordBatch | Record<string, ColumnInput>;

/**
 * One column from a plain value. Typed arrays keep their type (Int32Array -> Int32,
 * BigInt64Array -> Int64, ...). JS arrays are typed by their non-null values, recursively:
 * numbers -> Float64 (a JS number is a double), bigints -> Int64, strings -> Utf8,
 * booleans -> Bool, Dates -> Timestamp(ms, "UTC"), Uint8Arrays -> Binary, arrays -> List,
 * plain objects -> Struct (fields: the union of their keys), only nulls -> Null.
 * null and undefined are nulls. For any other type pass an Arrow Vector or Table.
 */
export function toVector(name: string, values: ColumnInput): Vector {
  if (values instanceof Vector) return values;
  if (ArrayBuffer.isView(values) && !(values instanceof DataView)) {
    return makeVector(values as unknown as Int32Array);
  }
  if (!Array.isArray(values)) {
    throw new InvalidArgumentError(status.INVALID_ARGUMENT, `column "${name}" is not an array, typed array or Arrow Vector`);
  }
  const type = inferType(name, values);
  return vectorFromArray(values.map((v) => normalize(v, type)), type);
}

// undefined -> null and every struct field present (apache-arrow's builder turns a missing string
// field into "" rather than null).
function normalize(v: unknown, type: DataType): unknown {
  if (v === null || v === undefined) return null;
  if (type instanceof Struct) {
    const o = v as Record<string, unknown>;
    return Object.fromEntries(type.children.map((f) => [f.name, normalize(o[f.name], f.type)]));
  }
  if (type instanceof List) return (v as unknown[]).map((x) => normalize(x, type.children[0].type));
  return v;
}

function inferType(path: string, values: readonly unknown[]): DataType {
  const kinds = new Set<string>();
  for (const v of values) if (v !== null && v !== undefined) kinds.add(kindOf(v));
  if (kinds.size > 1) {
    throw new InvalidArgumentError(
      status.INVALID_ARGUMENT,
      `column "${path}" mixes value types (${[...kinds].sort().join(', ')}); use one type per column or pass an Arrow Vector`,
    );
  }
  const present = values.filter((v) => v !== null && v !== undefined);
  switch ([...kinds][0]) {
    case undefined:
      return new Null();
    case 'number':
      return new Float64();
    case 'bigint':
      return new Int64();
    case 'string':
      return new Utf8();
    case 'boolean':
      return new Bool();
    case 'date':
      return new TimestampMillisecond('UTC');
    case 'binary':
      return new Binary();
    case 'array':
      return new List(new Field('item', inferType(`${path}[]`, (present as unknown[][]).flat()), true));
    case 'object': {
      const keys = [...new Set(present.flatMap((o) => Object.keys(o as object)))];
      return new Struct(
        keys.map((k) => new Field(k, inferType(`${path}.${k}`, present.map((o) => (o as Record<string, unknown>)[k] ?? null)), true)),
      );
    }
    default:
      throw new InvalidArgumentError(status.INVALID_ARGUMENT, `column "${path}" holds ${[...kinds][0]} values, which have no Arrow type`);
  }
}

function kindOf(v: unknown): string {
  if (v instanceof Date) return 'date';
  if (v instanceof Uint8Array) return 'binary';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** A Table from any accepted input; plain columns must all have the same length. */
export function toTable(data: TableInput): Table {
  if (data instanceof Table) return data;
  if (data instanceof RecordBatch) return new Table(data);
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new InvalidArgumentError(status.INVALID_ARGUMENT, 'expected an Arrow Table, a RecordBatch or an object of columns');
  }
  const columns: Record<string, Vector> = {};
  let length: number | undefined;
  for (const [name, values] of Object.entries(data)) {
    const vector = toVector(name, values);
    if (length !== undefined && vector.length !== length) {
      throw new InvalidArgumentError(
        status.INVALID_ARGUMENT,
        `column "${name}" has ${vector.length} values but the previous columns have ${length}`,
      );
    }
    length = vector.length;
    columns[name] = vector;
  }
  // Every plain column may hold nulls (apache-arrow marks all-null columns non-nullable).
  const table = new Table(columns);
  const schema = new Schema(table.schema.fields.map((f) => f.clone({ nullable: true })));
  return new Table(schema, table.batches.map((b) => new RecordBatch(schema, b.data)));
}

// The writer's byte count is protected; a subclass may read it. It lets `ipcChunks` know when it
// has taken every byte of the batch just written, so at most one batch is encoded ahead.
class CountingStreamWriter extends RecordBatchStreamWriter {
  get position(): number {
    return this._position;
  }
}

/**
 * The Arrow IPC stream of `table`, cut into chunks of at most `chunkBytes`, produced lazily:
 * the next batch is encoded only when the consumer asks for more, so a caller that awaits the
 * gRPC stream's 'drain' keeps memory at about one batch plus one chunk.
 */
export async function* ipcChunks(table: Table, chunkBytes = CHUNK_BYTES): AsyncGenerator<Uint8Array> {
  const writer = new CountingStreamWriter();
  const pieces = writer[Symbol.asyncIterator]();
  const out = new Coalescer(chunkBytes);
  let taken = 0;
  // Writes the schema message even when the table has no batches.
  writer.reset(undefined, table.schema);
  const drain = async function* (): AsyncGenerator<Uint8Array> {
    while (taken < writer.position) {
      const r = await pieces.next();
      if (r.done) break;
      taken += r.value.byteLength;
      yield* out.push(r.value);
    }
  };
  for (const batch of table.batches) {
    // A batch whose schema differs from the table's (even in nullability) would end the stream.
    writer.write(batch.schema === table.schema ? batch : new RecordBatch(table.schema, batch.data));
    yield* drain();
  }
  writer.close(); // the end-of-stream marker, then the queue ends
  for (let r = await pieces.next(); !r.done; r = await pieces.next()) yield* out.push(r.value);
  yield* out.flush();
}

/** Gathers small pieces into chunks of exactly `size` bytes (the last one may be shorter). */
class Coalescer {
  private buf: Uint8Array;
  private len = 0;
  constructor(private readonly size: number) {
    this.buf = new Uint8Array(size);
  }
  *push(piece: Uint8Array): Generator<Uint8Array> {
    let at = 0;
    while (at < piece.byteLength) {
      const n = Math.min(this.size - this.len, piece.byteLength - at);
      this.buf.set(piece.subarray(at, at + n), this.len);
      this.len += n;
      at += n;
      if (this.len === this.size) {
        yield this.buf;
        this.buf = new Uint8Array(this.size); // the yielded chunk now belongs to the consumer
        this.len = 0;
      }
    }
  }
  *flush(): Generator<Uint8Array> {
    if (this.len > 0) yield this.buf.slice(0, this.len);
    this.len = 0;
  }
}

/** Record batches decoded incrementally from IPC stream chunks, plus the stream's schema. */
export async function openBatches(chunks: AsyncIterable<Uint8Array>): Promise<AsyncIterableIterator<RecordBatch> & { schema: Schema }> {
  const reader = await RecordBatchReader.from(chunks);
  await reader.open();
  return reader as unknown as AsyncIterableIterator<RecordBatch> & { schema: Schema };
}

/** A whole Table from IPC stream chunks (an empty one keeps its schema). */
export async function collectTable(chunks: AsyncIterable<Uint8Array>): Promise<Table> {
  const reader = await openBatches(chunks);
  const batches: RecordBatch[] = [];
  for await (const batch of reader) batches.push(batch);
  return batches.length > 0 ? new Table(batches) : new Table(reader.schema);
}

