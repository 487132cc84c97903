// The shared wide table of the cross-language test (docs/cross-language.md): the types all four
// clients both produce and read faithfully, 5 rows, nulls in every column. Fixed-width columns
// are built from their raw stored values (makeData), so 64-bit ticks and decimals stay exact.
import * as A from 'apache-arrow';
import { decimal128 } from './wide-table.mjs';

const ROWS = 5;

/** A fixed-width column from its stored values (`null` for null) in a typed array of `Array`. */
function raw(type, Array_, values) {
  const nullBitmap = new Uint8Array(1);
  values.forEach((v, i) => {
    if (v !== null) nullBitmap[i >> 3] |= 1 << (i & 7);
  });
  const stride = type.typeId === A.Type.Decimal ? 4 : 1;
  const data = new Array_(values.length * stride);
  values.forEach((v, i) => {
    if (v !== null) data.set(stride === 4 ? decimal128(v) : [v], i * stride);
  });
  const nullCount = values.filter((v) => v === null).length;
  return A.makeVector(A.makeData({ type, length: values.length, nullCount, nullBitmap, data }));
}

const col = (type, values) => A.vectorFromArray(values, type);
const bytes = (hex) => Uint8Array.from(Buffer.from(hex, 'hex'));
const field = (name, type) => new A.Field(name, type, true);

export function xlangColumns() {
  const I64_MIN = -(2n ** 63n);
  const I64_MAX = 2n ** 63n - 1n;
  return {
    i8: raw(new A.Int8(), Int8Array, [-128, 127, null, 0, -1]),
    i16: raw(new A.Int16(), Int16Array, [-32768, 32767, 0, null, 7]),
    i32: raw(new A.Int32(), Int32Array, [-2147483648, 2147483647, null, 0, 42]),
    i64: raw(new A.Int64(), BigInt64Array, [I64_MIN, I64_MAX, 9007199254740993n, null, 0n]),
    u8: raw(new A.Uint8(), Uint8Array, [0, 255, null, 1, 200]),
    u16: raw(new A.Uint16(), Uint16Array, [0, 65535, 1, null, 60000]),
    u32: raw(new A.Uint32(), Uint32Array, [0, 4294967295, null, 1, 4000000000]),
    u64: raw(new A.Uint64(), BigUint64Array, [0n, 2n ** 64n - 1n, 9007199254740993n, null, 1n]),
    f32: raw(new A.Float32(), Float32Array, [0.1, -0, Infinity, null, -3.4028234663852886e38]),
    f64: raw(new A.Float64(), Float64Array, [0.1, 5e-324, NaN, null, -Infinity]),
    bool: col(new A.Bool(), [true, false, null, true, false]),
    str: col(new A.Utf8(), ['BTC', '', null, 'naïve ☃ "q" \\ \t\n', 'ctl \u0001 🚀']),
    large_str: col(new A.LargeUtf8(), ['large', null, '日本語', '', 'x']),
    bin: col(new A.Binary(), [bytes('000102ff'), bytes(''), null, bytes('deadbeef'), bytes('0a0d')]),
    // Temporal columns hold their stored integers: days, or ticks of the type's unit.
    date: raw(new A.DateDay(), Int32Array, [0, -719162, null, 2932896, 20487]),
    ts_ms: raw(new A.TimestampMillisecond(), BigInt64Array, [0n, -1n, null, 1770129015123n, 253402300799999n]),
    ts_us_utc: raw(new A.TimestampMicrosecond('UTC'), BigInt64Array, [1770129015123456n, 0n, null, -62135596800000000n, 1n]),
    ts_ns_tokyo: raw(new A.TimestampNanosecond('Asia/Tokyo'), BigInt64Array, [
      1770129015123456789n,
      -1n,
      null,
      4102444800000000000n,
      0n,
    ]),
    dur_ms: raw(new A.DurationMillisecond(), BigInt64Array, [0n, -1000n, null, 86400000n, I64_MAX]),
    dur_ns: raw(new A.DurationNanosecond(), BigInt64Array, [90000000000n, -5n, null, 1n, 0n]),
    time_ns: raw(new A.TimeNanosecond(), BigInt64Array, [0n, 86399999999999n, null, 52215123456789n, 1n]),
    // Decimals from their unscaled integers: Decimal(scale, precision, bitWidth).
    dec: raw(new A.Decimal(2, 10, 128), Uint32Array, [12345n, -9999999999n, null, 0n, 1n]),
    big_dec: raw(new A.Decimal(9, 38, 128), Uint32Array, [10n ** 38n - 1n, -1n, null, 0n, 1500000000n]),
    list_i64: col(new A.List(field('item', new A.Int64())), [[1n, 2n, 3n], [], null, [I64_MIN, null], [0n]]),
    list_str: col(new A.List(field('item', new A.Utf8())), [['a', 'b'], null, [], [null, 'ü'], ['x']]),
    point: col(new A.Struct([field('x', new A.Int32()), field('label', new A.Utf8())]), [
      { x: 10, label: 'BTC' },
      { x: null, label: 'only label' },
      null,
      { x: -1, label: null },
      { x: 0, label: '' },
    ]),
    cat: col(new A.Dictionary(new A.Utf8(), new A.Int32()), ['buy', 'sell', null, 'buy', '']),
    fsl: col(new A.FixedSizeList(2, field('item', new A.Int64())), [[1n, 2n], null, [I64_MAX, null], [0n, 0n], [-1n, -2n]]),
    nothing: col(new A.Null(), [null, null, null, null, null]),
  };
}

export function xlangTable() {
  // An explicit schema: every field nullable (inferred, a Null-typed field would be non-nullable).
  const columns = Object.entries(xlangColumns());
  const schema = new A.Schema(columns.map(([name, v]) => new A.Field(name, v.type, true)));
  const children = columns.map(([, v]) => v.data[0]);
  const struct = A.makeData({ type: new A.Struct(schema.fields), length: ROWS, nullCount: 0, children });
  const table = new A.Table([new A.RecordBatch(schema, struct)]);
  if (table.numRows !== ROWS) throw new Error(`the shared table has ${table.numRows} rows, not ${ROWS}`);
  return table;
}
