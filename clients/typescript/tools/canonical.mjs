// The canonical dump of an Arrow table that every client's cross-language tool prints, byte for
// byte (docs/cross-language.md, format "polarway-xlang/1").
import { Type, Vector } from 'apache-arrow';

const UNITS = ['s', 'ms', 'us', 'ns'];

/**
 * The canonical type name. Representation-only differences are normalized: utf8, large_utf8 and
 * utf8_view are "string"; binary, large_binary and binary_view "binary"; list and large_list
 * "list<T>"; a dictionary is "dictionary<VALUE>" whatever its index type.
 */
export function typeName(t) {
  switch (t.typeId) {
    case Type.Int:
      return `${t.isSigned ? '' : 'u'}int${t.bitWidth}`;
    case Type.Float:
      if (t.precision === 0) break; // float16: outside the shared set
      return t.precision === 1 ? 'float32' : 'float64';
    case Type.Bool:
      return 'bool';
    case Type.Utf8:
    case Type.LargeUtf8:
    case Type.Utf8View:
      return 'string';
    case Type.Binary:
    case Type.LargeBinary:
    case Type.BinaryView:
      return 'binary';
    case Type.Date:
      if (t.unit !== 0) break; // date64: outside the shared set
      return 'date32';
    case Type.Timestamp:
      return `timestamp[${UNITS[t.unit]}${t.timezone ? `, ${t.timezone}` : ''}]`;
    case Type.Duration:
      return `duration[${UNITS[t.unit]}]`;
    case Type.Time:
      return `time${t.bitWidth}[${UNITS[t.unit]}]`;
    case Type.Decimal:
      if (t.bitWidth !== 128) break;
      return `decimal128(${t.precision}, ${t.scale})`;
    case Type.List:
    case Type.LargeList:
      return `list<${typeName(t.children[0].type)}>`;
    case Type.FixedSizeList:
      return `fixed_size_list<${typeName(t.children[0].type)}>[${t.listSize}]`;
    case Type.Null:
      return 'null';
    case Type.Struct:
      return `struct<${t.children.map((f) => `${f.name}: ${typeName(f.type)}`).join(', ')}>`;
    case Type.Dictionary:
      return `dictionary<${typeName(t.dictionary)}>`;
  }
  throw new Error(`no canonical name for Arrow type ${t}`);
}

/** Shortest round-trip digits in scientific notation: "1e-1", "-1.5e0", "-0e0". */
export function floatText(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (Object.is(x, -0)) return '-0e0';
  return x.toExponential().replace('e+', 'e');
}

const hex = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

/** An unscaled Decimal128 (four little-endian 32-bit words) with exactly `scale` fraction digits. */
function decimalText(words, scale) {
  let x = 0n;
  for (let k = words.length - 1; k >= 0; k--) x = (x << 32n) | BigInt(words[k]);
  x = BigInt.asIntN(words.length * 32, x);
  let digits = (x < 0n ? -x : x).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, '0');
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return (x < 0n ? '-' : '') + digits;
}

/** The canonical value of row `i` of one chunk (`Data`) of a column. */
function value(data, i) {
  if (data.type.typeId === Type.Null || !data.getValid(i)) return null;
  const t = data.type;
  switch (t.typeId) {
    case Type.Int:
    case Type.Date: // days
    case Type.Timestamp: // ticks of the type's unit
    case Type.Time:
    case Type.Duration:
      return String(data.values[i]);
    case Type.Float: // float32 widened to float64
      return floatText(data.values[i]);
    case Type.Bool:
    case Type.Utf8:
    case Type.LargeUtf8:
    case Type.Utf8View:
      return new Vector([data]).get(i);
    case Type.Binary:
    case Type.LargeBinary:
    case Type.BinaryView:
      return hex(new Vector([data]).get(i));
    case Type.Decimal:
      return decimalText(data.values.subarray(4 * i, 4 * (i + 1)), t.scale);
    case Type.List:
    case Type.LargeList: {
      const [child] = data.children;
      const out = [];
      for (let j = Number(data.valueOffsets[i]); j < Number(data.valueOffsets[i + 1]); j++) out.push(value(child, j));
      return out;
    }
    case Type.FixedSizeList: {
      const [child] = data.children;
      return Array.from({ length: t.listSize }, (_, k) => value(child, i * t.listSize + k));
    }
    case Type.Struct: // a Map keeps field order even for integer-like names
      return new Map(t.children.map((f, k) => [f.name, value(data.children[k], i)]));
    case Type.Dictionary: {
      let idx = Number(data.values[i]);
      for (const chunk of data.dictionary.data) {
        if (idx < chunk.length) return value(chunk, idx);
        idx -= chunk.length;
      }
      throw new Error(`dictionary index out of range in ${t}`);
    }
  }
  throw new Error(`no canonical value for Arrow type ${t}`);
}

/** Compact JSON of a canonical value; JSON.stringify escapes strings exactly as the format does. */
function json(v) {
  if (Array.isArray(v)) return `[${v.map(json).join(',')}]`;
  if (v instanceof Map) return `{${[...v].map(([k, x]) => `${JSON.stringify(k)}:${json(x)}`).join(',')}}`;
  return JSON.stringify(v);
}

/** The canonical dump of `table`: a header line, one compact JSON line per column, a closing line. */
export function canonicalJson(table) {
  const lines = table.schema.fields.map((f, k) => {
    const values = [];
    for (const batch of table.batches) {
      const data = batch.data.children[k];
      for (let i = 0; i < batch.numRows; i++) values.push(value(data, i));
    }
    return json(new Map([['name', f.name], ['type', typeName(f.type)], ['values', values]]));
  });
  const body = lines.map((line, k) => `${k ? ',' : ''}\n${line}`).join('');
  return `{"format":"polarway-xlang/1","rows":${table.numRows},"columns":[${body}\n]}\n`;
}
