"""The Python side of the cross-language test (docs/cross-language.md).

    python tools/xlang.py store HOST:PORT NAME [--token T]   store the fixed wide table as NAME
    python tools/xlang.py dump  HOST:PORT NAME [--token T]   print NAME's canonical dump
    python tools/xlang.py copy  HOST:PORT SRC DST [--token T] load SRC, store what was loaded as DST
    python tools/xlang.py fixture                            print the fixed table's dump (no server)

The table is built and read with pyarrow (``format="arrow"``), which keeps every Arrow type as it
is on the wire. Exit status 1 on any error.
"""

from __future__ import annotations

import decimal
import json
import sys
from typing import Any

import pyarrow as pa

from polarway import DistributedClient, PolarwayError

I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def wide_table() -> pa.Table:
    """The fixed wide table: one column per type of the shared set, with nulls in every column."""
    D = decimal.Decimal
    cols = {
        "i8": pa.array([-128, 127, None, 0, -1], pa.int8()),
        "i16": pa.array([-32768, 32767, 0, None, 7], pa.int16()),
        "i32": pa.array([-(2**31), 2**31 - 1, None, 0, 42], pa.int32()),
        "i64": pa.array([I64_MIN, I64_MAX, 9007199254740993, None, 0], pa.int64()),
        "u8": pa.array([0, 255, None, 1, 200], pa.uint8()),
        "u16": pa.array([0, 65535, 1, None, 60000], pa.uint16()),
        "u32": pa.array([0, 2**32 - 1, None, 1, 4000000000], pa.uint32()),
        "u64": pa.array([0, U64_MAX, 9007199254740993, None, 1], pa.uint64()),
        "f32": pa.array([0.1, -0.0, float("inf"), None, -3.4028234663852886e38], pa.float32()),
        "f64": pa.array([0.1, 5e-324, float("nan"), None, float("-inf")], pa.float64()),
        "bool": pa.array([True, False, None, True, False], pa.bool_()),
        "str": pa.array(["BTC", "", None, 'naïve ☃ "q" \\ \t\n', "ctl \x01 🚀"], pa.string()),
        "large_str": pa.array(["large", None, "日本語", "", "x"], pa.large_string()),
        "bin": pa.array([b"\x00\x01\x02\xff", b"", None, b"\xde\xad\xbe\xef", b"\n\r"], pa.binary()),
        # Temporal columns from their stored integers: days, or ticks of the type's unit.
        "date": pa.array([0, -719162, None, 2932896, 20487], pa.int32()).view(pa.date32()),
        "ts_ms": pa.array([0, -1, None, 1770129015123, 253402300799999], pa.int64()).view(pa.timestamp("ms")),
        "ts_us_utc": pa.array([1770129015123456, 0, None, -62135596800000000, 1], pa.int64()).view(
            pa.timestamp("us", "UTC")
        ),
        "ts_ns_tokyo": pa.array([1770129015123456789, -1, None, 4102444800000000000, 0], pa.int64()).view(
            pa.timestamp("ns", "Asia/Tokyo")
        ),
        "dur_ms": pa.array([0, -1000, None, 86400000, I64_MAX], pa.int64()).view(pa.duration("ms")),
        "dur_ns": pa.array([90000000000, -5, None, 1, 0], pa.int64()).view(pa.duration("ns")),
        "time_ns": pa.array([0, 86399999999999, None, 52215123456789, 1], pa.int64()).view(pa.time64("ns")),
        "dec": pa.array([D("123.45"), D("-99999999.99"), None, D("0.00"), D("0.01")], pa.decimal128(10, 2)),
        "big_dec": pa.array(
            [D("99999999999999999999999999999.999999999"), D("-0.000000001"), None, D(0), D("1.5")],
            pa.decimal128(38, 9),
        ),
        "list_i64": pa.array([[1, 2, 3], [], None, [I64_MIN, None], [0]], pa.list_(pa.int64())),
        "list_str": pa.array([["a", "b"], None, [], [None, "ü"], ["x"]], pa.list_(pa.string())),
        "point": pa.array(
            [
                {"x": 10, "label": "BTC"},
                {"x": None, "label": "only label"},
                None,
                {"x": -1, "label": None},
                {"x": 0, "label": ""},
            ],
            pa.struct([("x", pa.int32()), ("label", pa.string())]),
        ),
        "cat": pa.array(["buy", "sell", None, "buy", ""], pa.string()).dictionary_encode(),
        "fsl": pa.array([[1, 2], None, [I64_MAX, None], [0, 0], [-1, -2]], pa.list_(pa.int64(), 2)),
        "nothing": pa.nulls(5),
    }
    return pa.table(cols)


def type_name(t: pa.DataType) -> str:
    """The canonical type name; representation-only differences (large/view strings, binaries and
    lists, dictionary index types) are normalized away."""
    if pa.types.is_integer(t):
        return str(t)  # int8 ... uint64
    if pa.types.is_float32(t):
        return "float32"
    if pa.types.is_float64(t):
        return "float64"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_date32(t):
        return "date32"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}, {t.tz}]" if t.tz else f"timestamp[{t.unit}]"
    if pa.types.is_duration(t):
        return f"duration[{t.unit}]"
    if pa.types.is_time64(t) or pa.types.is_time32(t):
        return f"time{t.bit_width}[{t.unit}]"
    if pa.types.is_decimal128(t):
        return f"decimal128({t.precision}, {t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return f"list<{type_name(t.value_type)}>"
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{type_name(t.value_type)}>[{t.list_size}]"
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {type_name(f.type)}" for f in t) + ">"
    if pa.types.is_dictionary(t):
        return f"dictionary<{type_name(t.value_type)}>"
    raise ValueError(f"no canonical name for Arrow type {t}")


def float_text(x: float) -> str:
    """Shortest round-trip digits in scientific notation: "1e-1", "-1.5e0", "-0e0"."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    sign, digits, exp = decimal.Decimal(repr(x)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0")
    exp += len(digits) - 1  # exponent of the first digit
    if not text:
        text, exp = "0", 0
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{exp}"


def decimal_text(d: decimal.Decimal, scale: int) -> str:
    """Exactly `scale` fraction digits, e.g. "-0.05" (no exponent, no precision loss)."""
    sign, digits, exp = d.as_tuple()
    unscaled = int("".join(map(str, digits)) or "0") * 10 ** (exp + scale)
    text = str(unscaled).rjust(scale + 1, "0")
    if scale:
        text = text[:-scale] + "." + text[-scale:]
    return ("-" if sign else "") + text


def values(arr: pa.Array) -> list[Any]:
    """The canonical values of one array, one per row."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return values(arr.dictionary_decode())
    if pa.types.is_null(t):
        return [None] * len(arr)
    valid = arr.is_valid().to_pylist()
    if pa.types.is_fixed_size_list(t):
        n, inner = t.list_size, values(arr.values)  # .values: the whole child, slots of null rows too
        return [inner[(arr.offset + i) * n : (arr.offset + i + 1) * n] if ok else None for i, ok in enumerate(valid)]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = arr.offsets.to_pylist()
        inner = values(arr.values)
        return [inner[offsets[i] : offsets[i + 1]] if ok else None for i, ok in enumerate(valid)]
    if pa.types.is_struct(t):
        fields = [(f.name, values(child)) for f, child in zip(t, arr.flatten())]
        return [{name: vals[i] for name, vals in fields} if ok else None for i, ok in enumerate(valid)]
    if pa.types.is_temporal(t):
        # The stored integer: days (date32), or ticks of the type's unit.
        arr = arr.view(pa.int32() if t.bit_width == 32 else pa.int64())
    py = arr.to_pylist()
    if pa.types.is_integer(arr.type):
        return [None if v is None else str(v) for v in py]
    if pa.types.is_floating(t):
        return [None if v is None else float_text(v) for v in py]
    if pa.types.is_decimal(t):
        return [None if v is None else decimal_text(v, t.scale) for v in py]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return [None if v is None else v.hex() for v in py]
    if pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return py
    raise ValueError(f"no canonical values for Arrow type {t}")


def dump(table: pa.Table) -> str:
    """The canonical dump: a header line, one compact JSON line per column, a closing line."""

    def text(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    lines = []
    for field, column in zip(table.schema, table.columns):
        vals = [v for chunk in column.chunks for v in values(chunk)]
        lines.append(text({"name": field.name, "type": type_name(field.type), "values": vals}))
    body = "".join(("\n" if i == 0 else ",\n") + line for i, line in enumerate(lines))
    return f'{{"format":"polarway-xlang/1","rows":{table.num_rows},"columns":[{body}\n]}}\n'


def main(argv: list[str]) -> int:
    usage = "usage: xlang.py store|dump HOST:PORT NAME [--token T]  |  copy HOST:PORT SRC DST [--token T]  |  fixture"
    if argv == ["fixture"]:
        sys.stdout.write(dump(wide_table()))
        return 0
    dst = argv.pop(3) if argv[:1] == ["copy"] and len(argv) >= 4 else None
    if (
        len(argv) not in (3, 5)
        or argv[0] not in ("store", "dump", "copy")
        or (argv[0] == "copy" and dst is None)
        or (len(argv) == 5 and argv[3] != "--token")
    ):
        print(usage, file=sys.stderr)
        return 2
    command, address, name = argv[:3]
    host, _, port = address.rpartition(":")
    token = argv[4] if len(argv) == 5 else None
    try:
        with DistributedClient(host=host.strip("[]"), port=int(port), timeout=60, auth_token=token) as client:
            if command in ("store", "copy"):
                data = client.load(name, format="arrow") if command == "copy" else wide_table()
                info = client.store(dst or name, data)
                print(
                    json.dumps({"name": info.name, "version": info.version, "rows": info.rows}, separators=(",", ":"))
                )
            else:
                sys.stdout.write(dump(client.load(name, format="arrow")))
    except PolarwayError as e:
        print(f"xlang: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
