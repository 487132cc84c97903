// A table with one column per Arrow type the JS library can write, with nulls in every column.
import * as A from 'apache-arrow';

/** 128-bit two's complement of `v` as four little-endian 32-bit words (Arrow's Decimal128 layout). */
export function decimal128(v) {
  let x = BigInt.asUintN(128, v);
  const words = new Uint32Array(4);
  for (let i = 0; i < 4; i++, x >>= 32n) words[i] = Number(x & 0xffffffffn);
  return words;
}

/** The integer a Decimal128 cell holds (unscaled). */
export function decimalValue(words) {
  let x = 0n;
  for (let i = 3; i >= 0; i--) x = (x << 32n) | BigInt(words[i]);
  return BigInt.asIntN(128, x);
}

const col = (type, values) => A.vectorFromArray(values, type);

/** Columns (name -> Vector) of `n` rows: row i is null in column j when (i + j) % 3 == 0. */
export function wideColumns(n = 7) {
  /** @type {Record<string, [A.DataType, (i: number) => unknown]>} */
  const spec = {
    i8: [new A.Int8(), (i) => (i % 2 ? -128 : 127) + (i % 2 ? i : -i)],
    i16: [new A.Int16(), (i) => (i % 2 ? -32768 : 32767) + (i % 2 ? i : -i)],
    i32: [new A.Int32(), (i) => (i % 2 ? -2147483648 : 2147483647) + (i % 2 ? i : -i)],
    i64: [new A.Int64(), (i) => (i % 2 ? -(2n ** 63n) : 2n ** 63n - 1n) + BigInt(i % 2 ? i : -i)],
    u8: [new A.Uint8(), (i) => 255 - i],
    u16: [new A.Uint16(), (i) => 65535 - i],
    u32: [new A.Uint32(), (i) => 4294967295 - i],
    u64: [new A.Uint64(), (i) => 2n ** 64n - 1n - BigInt(i)],
    f32: [new A.Float32(), (i) => [1.5, -0.25, 3.4028234663852886e38, Infinity, -Infinity, 1e-30][i % 6]],
    f64: [new A.Float64(), (i) => [Math.PI, -0.0, 1.7976931348623157e308, Number.MIN_VALUE, -Infinity, 123456.789][i % 6]],
    bool: [new A.Bool(), (i) => i % 2 === 0],
    utf8: [new A.Utf8(), (i) => ['', 'héllo', '日本語 ✓', 'a"b\\c\n', 'x'.repeat(300)][i % 5]],
    large_utf8: [new A.LargeUtf8(), (i) => ['large', '', 'ünïcode 🚀'][i % 3]],
    binary: [new A.Binary(), (i) => Uint8Array.from([0, 255, i, 10, 13])],
    large_binary: [new A.LargeBinary(), (i) => Uint8Array.from({ length: i }, (_, k) => k)],
    date32: [new A.DateDay(), (i) => new Date(Date.UTC(1969 + i * 10, i, 1 + i))],
    date64: [new A.DateMillisecond(), (i) => new Date(Date.UTC(2026, 1, 3 + i))],
    ts_s: [new A.TimestampSecond(), (i) => 1_770_076_800_000 + i * 1000],
    ts_ms_utc: [new A.TimestampMillisecond('UTC'), (i) => 1_770_076_800_123 + i],
    ts_us_paris: [new A.TimestampMicrosecond('Europe/Paris'), (i) => 1_770_076_800_000 + i * 3_600_000],
    ts_ns_ny: [new A.TimestampNanosecond('America/New_York'), (i) => -86_400_000 + i],
    time_ms: [new A.TimeMillisecond(), (i) => i * 3_600_000 + 59_999],
    time_us: [new A.TimeMicrosecond(), (i) => BigInt(i) * 3_600_000_000n + 1n],
    time_ns: [new A.TimeNanosecond(), (i) => BigInt(i) * 3_600_000_000_000n + 999n],
    dur_s: [new A.DurationSecond(), (i) => BigInt(i * 86400 - 5)],
    dur_ms: [new A.DurationMillisecond(), (i) => BigInt(-i * 1000)],
    dur_us: [new A.DurationMicrosecond(), (i) => BigInt(i) * 1_000_000n],
    dur_ns: [new A.DurationNanosecond(), (i) => 2n ** 62n + BigInt(i)],
    decimal: [new A.Decimal(3, 38, 128), (i) => decimal128((i % 2 ? -1n : 1n) * (10n ** 37n + BigInt(i) * 1234n))],
    list_i32: [new A.List(new A.Field('item', new A.Int32(), true)), (i) => (i % 2 ? [] : [i, null, -i])],
    list_utf8: [new A.List(new A.Field('item', new A.Utf8(), true)), (i) => ['a', 'b'.repeat(i)]],
    struct: [
      new A.Struct([new A.Field('a', new A.Int32(), true), new A.Field('b', new A.Utf8(), true)]),
      (i) => ({ a: i, b: i % 2 ? null : `s${i}` }),
    ],
    dict: [new A.Dictionary(new A.Utf8(), new A.Int32()), (i) => ['BTC', 'ETH', 'SOL'][i % 3]],
  };
  const columns = {};
  Object.entries(spec).forEach(([name, [type, make]], j) => {
    columns[name] = col(type, Array.from({ length: n }, (_, i) => ((i + j) % 3 === 0 ? null : make(i))));
  });
  return columns;
}

export function wideTable(n = 7) {
  return new A.Table(wideColumns(n));
}
