// A canonical, language-neutral JSON dump of an Arrow table, for cross-language checks.
// The format is described in README.md ("Cross-language tool").
import { Type, Vector } from 'apache-arrow';

/** pyarrow's spelling of an Arrow type (`str(pa_type)`), e.g. "timestamp[us, tz=UTC]". */
export function typeName(t) {
  const unit = (u) => ['s', 'ms', 'us', 'ns'][u];
  switch (t.typeId) {
    case Type.Null:
      return 'null';
    case Type.Bool:
      return 'bool';
    case Type.Int:
      return `${t.isSigned ? '' : 'u'}int${t.bitWidth}`;
    case Type.Float:
      return ['halffloat', 'float', 'double'][t.precision];
    case Type.Utf8:
      return 'string';
    case Type.LargeUtf8:
      return 'large_string';
    case Type.Utf8View:
      return 'string_view';
    case Type.Binary:
      return 'binary';
    case Type.LargeBinary:
      return 'large_binary';
    case Type.BinaryView:
      return 'binary_view';
    case Type.FixedSizeBinary:
      return `fixed_size_binary[${t.byteWidth}]`;
    case Type.Date:
      return t.unit === 0 ? 'date32[day]' : 'date64[ms]';
    case Type.Timestamp:
      return `timestamp[${unit(t.unit)}${t.timezone ? `, tz=${t.timezone}` : ''}]`;
    case Type.Time:
      return `time${t.bitWidth}[${unit(t.unit)}]`;
    case Type.Duration:
      return `duration[${unit(t.unit)}]`;
    case Type.Decimal:
      return `decimal${t.bitWidth}(${t.precision}, ${t.scale})`;
    case Type.List:
      return `list<${fieldName(t.children[0])}>`;
    case Type.LargeList:
      return `large_list<${fieldName(t.children[0])}>`;
    case Type.FixedSizeList:
      return `fixed_size_list<${fieldName(t.children[0])}>[${t.listSize}]`;
    case Type.Struct:
      return `struct<${t.children.map(fieldName).join(', ')}>`;
    case Type.Map:
      return `map<${typeName(t.children[0].type.children[0].type)}, ${typeName(t.children[0].type.children[1].type)}>`;
    case Type.Dictionary:
      return `dictionary<values=${typeName(t.dictionary)}, indices=${typeName(t.indices)}, ordered=${t.isOrdered ? 1 : 0}>`;
    default:
      throw new Error(`no canonical name for Arrow type ${t}`);
  }
}

const fieldName = (f) => `${f.name}: ${typeName(f.type)}${f.nullable ? '' : ' not null'}`;

// BigInts and special floats are written as raw JSON tokens through this marker.
const RAW = '\u0000raw:';

function float(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (Object.is(x, -0)) return `${RAW}-0.0`;
  return x;
}

const hex = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

function decimalText(words, scale) {
  let x = 0n;
  for (let k = words.length - 1; k >= 0; k--) x = (x << 32n) | BigInt(words[k]);
  x = BigInt.asIntN(words.length * 32, x);
  const neg = x < 0n;
  let digits = (neg ? -x : x).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, '0');
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return (neg ? '-' : '') + digits;
}

/** The canonical value of row `i` of one chunk (`Data`) of a column. */
function value(data, i) {
  if (!data.getValid(i)) return null;
  const t = data.type;
  switch (t.typeId) {
    case Type.Null:
      return null;
    case Type.Int:
    case Type.Date: // date32: days, date64: ms since the epoch
    case Type.Timestamp: // in the type's unit
    case Type.Time:
    case Type.Duration:
      return raw(data.values[i]);
    case Type.Float:
      return float(t.precision === 0 ? new Vector([data]).get(i) : data.values[i]);
    case Type.Bool:
    case Type.Utf8:
    case Type.LargeUtf8:
    case Type.Utf8View:
      return new Vector([data]).get(i);
    case Type.Binary:
    case Type.LargeBinary:
    case Type.BinaryView:
    case Type.FixedSizeBinary:
      return hex(new Vector([data]).get(i));
    case Type.Decimal: {
      const stride = t.bitWidth / 32;
      return decimalText(data.values.subarray(stride * i, stride * (i + 1)), t.scale);
    }
    case Type.List:
    case Type.LargeList:
    case Type.Map: {
      const [child] = data.children;
      const out = [];
      for (let j = Number(data.valueOffsets[i]); j < Number(data.valueOffsets[i + 1]); j++) out.push(value(child, j));
      return t.typeId === Type.Map ? out.map((e) => [e.key, e.value]) : out;
    }
    case Type.FixedSizeList: {
      const [child] = data.children;
      return Array.from({ length: t.listSize }, (_, k) => value(child, i * t.listSize + k));
    }
    case Type.Struct: {
      const out = {};
      t.children.forEach((f, k) => {
        out[f.name] = value(data.children[k], i);
      });
      return out;
    }
    case Type.Dictionary: {
      let idx = Number(data.values[i]);
      for (const chunk of data.dictionary.data) {
        if (idx < chunk.length) return value(chunk, idx);
        idx -= chunk.length;
      }
      throw new Error(`dictionary index out of range in ${t}`);
    }
    default:
      throw new Error(`no canonical value for Arrow type ${t}`);
  }
}

const raw = (v) => (typeof v === 'bigint' ? `${RAW}${v}` : v);

/** The canonical dump of `table` as a plain object (markers for raw tokens included). */
export function canonical(table) {
  const fields = table.schema.fields;
  const rows = [];
  for (const batch of table.batches) {
    const columns = fields.map((_, k) => batch.data.children[k]);
    for (let i = 0; i < batch.numRows; i++) rows.push(columns.map((d) => value(d, i)));
  }
  return {
    schema: fields.map((f) => ({ name: f.name, type: typeName(f.type), nullable: f.nullable })),
    num_rows: table.numRows,
    rows,
  };
}

/** The canonical dump of `table` as JSON text: one row per line, 64-bit integers exact. */
export function canonicalJson(table) {
  const { schema, num_rows, rows } = canonical(table);
  const text = (x) => JSON.stringify(x).replace(/"\\u0000raw:([^"]*)"/g, '$1');
  return `{"schema":${text(schema)},\n"num_rows":${num_rows},\n"rows":[${rows.map((r) => `\n${text(r)}`).join(',')}\n]}\n`;
}
