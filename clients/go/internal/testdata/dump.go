package testdata

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Dump renders a table in the canonical dump format every client's cross-language tool prints
// (docs/cross-language.md), byte for byte:
//
//	{"format":"polarway-xlang/1","rows":N,"columns":[
//	{"name":"i64","type":"int64","values":["-9223372036854775808",null]},
//	...
//	]}
//
// Integers, temporal values (their stored integer: days, or ticks of the type's unit), floats
// (shortest round-trip digits, scientific: "1e-1") and decimals are strings; bool is true/false;
// binary is lowercase hex; lists are arrays, structs objects in field order, dictionaries their
// decoded values; null is null.
func Dump(tbl arrow.Table) ([]byte, error) {
	var out bytes.Buffer
	fmt.Fprintf(&out, `{"format":"polarway-xlang/1","rows":%d,"columns":[`, tbl.NumRows())
	for i := 0; i < int(tbl.NumCols()); i++ {
		col := tbl.Column(i)
		typ, err := TypeName(col.DataType())
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", col.Name(), err)
		}
		values := []any{}
		for _, chunk := range col.Data().Chunks() {
			for j := 0; j < chunk.Len(); j++ {
				v, err := value(chunk, j)
				if err != nil {
					return nil, fmt.Errorf("column %s: %w", col.Name(), err)
				}
				values = append(values, v)
			}
		}
		if i > 0 {
			out.WriteByte(',')
		}
		out.WriteByte('\n')
		writeJSON(&out, object{{"name", col.Name()}, {"type", typ}, {"values", values}})
	}
	out.WriteString("\n]}\n")
	return out.Bytes(), nil
}

// TypeName is the canonical name of a type. Representation-only differences are normalized:
// utf8/large_utf8/utf8_view are "string", binary/large_binary/binary_view "binary",
// list/large_list "list<T>" (fixed_size_list<T>[N] stays apart), and a dictionary is "dictionary<VALUE>" whatever its index type.
func TypeName(t arrow.DataType) (string, error) {
	switch t := t.(type) {
	case *arrow.Int8Type, *arrow.Int16Type, *arrow.Int32Type, *arrow.Int64Type,
		*arrow.Uint8Type, *arrow.Uint16Type, *arrow.Uint32Type, *arrow.Uint64Type,
		*arrow.Float32Type, *arrow.Float64Type, *arrow.Date32Type:
		return t.Name(), nil
	case *arrow.BooleanType:
		return "bool", nil
	case *arrow.StringType, *arrow.LargeStringType, *arrow.StringViewType:
		return "string", nil
	case *arrow.BinaryType, *arrow.LargeBinaryType, *arrow.BinaryViewType:
		return "binary", nil
	case *arrow.TimestampType:
		if t.TimeZone == "" {
			return fmt.Sprintf("timestamp[%s]", t.Unit), nil
		}
		return fmt.Sprintf("timestamp[%s, %s]", t.Unit, t.TimeZone), nil
	case *arrow.DurationType:
		return fmt.Sprintf("duration[%s]", t.Unit), nil
	case *arrow.Time32Type:
		return fmt.Sprintf("time32[%s]", t.Unit), nil
	case *arrow.Time64Type:
		return fmt.Sprintf("time64[%s]", t.Unit), nil
	case *arrow.Decimal128Type:
		return fmt.Sprintf("decimal128(%d, %d)", t.Precision, t.Scale), nil
	case *arrow.FixedSizeListType:
		elem, err := TypeName(t.Elem())
		return fmt.Sprintf("fixed_size_list<%s>[%d]", elem, t.Len()), err
	case arrow.ListLikeType:
		if _, ok := t.(*arrow.MapType); ok {
			break
		}
		elem, err := TypeName(t.Elem())
		return "list<" + elem + ">", err
	case *arrow.NullType:
		return "null", nil
	case *arrow.StructType:
		parts := make([]string, t.NumFields())
		for i, f := range t.Fields() {
			n, err := TypeName(f.Type)
			if err != nil {
				return "", err
			}
			parts[i] = f.Name + ": " + n
		}
		return "struct<" + strings.Join(parts, ", ") + ">", nil
	case *arrow.DictionaryType:
		val, err := TypeName(t.ValueType)
		return "dictionary<" + val + ">", err
	}
	return "", fmt.Errorf("no canonical name for type %s", t)
}

// object is a JSON object whose keys keep their order (struct fields in schema order).
type object []struct {
	key string
	val any
}

func value(a arrow.Array, i int) (any, error) {
	if _, ok := a.(*array.Null); ok || a.IsNull(i) { // a Null array has no validity bitmap
		return nil, nil
	}
	str := func(v any) (any, error) { return fmt.Sprint(v), nil }
	switch a := a.(type) {
	case *array.Int8:
		return str(a.Value(i))
	case *array.Int16:
		return str(a.Value(i))
	case *array.Int32:
		return str(a.Value(i))
	case *array.Int64:
		return str(a.Value(i))
	case *array.Uint8:
		return str(a.Value(i))
	case *array.Uint16:
		return str(a.Value(i))
	case *array.Uint32:
		return str(a.Value(i))
	case *array.Uint64:
		return str(a.Value(i))
	case *array.Float32:
		return floatText(float64(a.Value(i))), nil
	case *array.Float64:
		return floatText(a.Value(i)), nil
	case *array.Boolean:
		return a.Value(i), nil
	case *array.String:
		return a.Value(i), nil
	case *array.LargeString:
		return a.Value(i), nil
	case *array.StringView:
		return a.Value(i), nil
	case *array.Binary:
		return hex.EncodeToString(a.Value(i)), nil
	case *array.LargeBinary:
		return hex.EncodeToString(a.Value(i)), nil
	case *array.BinaryView:
		return hex.EncodeToString(a.Value(i)), nil
	case *array.Date32:
		return str(int32(a.Value(i)))
	case *array.Timestamp:
		return str(int64(a.Value(i)))
	case *array.Duration:
		return str(int64(a.Value(i)))
	case *array.Time32:
		return str(int32(a.Value(i)))
	case *array.Time64:
		return str(int64(a.Value(i)))
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		return decimalString(a.Value(i).BigInt(), scale), nil
	case *array.List, *array.LargeList, *array.ListView, *array.LargeListView, *array.FixedSizeList:
		l := a.(array.ListLike)
		start, end := l.ValueOffsets(i)
		out := []any{}
		for j := start; j < end; j++ {
			v, err := value(l.ListValues(), int(j))
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		out := make(object, a.NumField())
		for f := range out {
			v, err := value(a.Field(f), i)
			if err != nil {
				return nil, err
			}
			out[f].key, out[f].val = st.Field(f).Name, v
		}
		return out, nil
	case *array.Dictionary:
		return value(a.Dictionary(), a.GetValueIndex(i))
	}
	return nil, fmt.Errorf("no canonical rendering for %s", a.DataType())
}

// floatText is the shortest round-trip spelling in scientific notation: "1e-1", "-1.5e0", "-0e0".
func floatText(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	mantissa, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	e, _ := strconv.Atoi(exp) // "+08" -> 8
	return mantissa + "e" + strconv.Itoa(e)
}

// decimalString renders unscaled*10^-scale with exactly scale fraction digits, e.g. "-0.05".
func decimalString(unscaled *big.Int, scale int32) string {
	neg := unscaled.Sign() < 0
	digits := new(big.Int).Abs(unscaled).String()
	if scale > 0 {
		for len(digits) <= int(scale) {
			digits = "0" + digits
		}
		digits = digits[:len(digits)-int(scale)] + "." + digits[len(digits)-int(scale):]
	}
	if neg {
		return "-" + digits
	}
	return digits
}

// writeJSON writes compact JSON. Strings escape only '"', '\\' and control characters (\b \f \n
// \r \t, others as \u00xx), as every client's dump does; everything else is raw UTF-8.
func writeJSON(out *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		out.WriteString("null")
	case bool:
		out.WriteString(strconv.FormatBool(v))
	case string:
		out.WriteByte('"')
		for _, r := range v {
			switch r {
			case '"':
				out.WriteString(`\"`)
			case '\\':
				out.WriteString(`\\`)
			case '\b':
				out.WriteString(`\b`)
			case '\f':
				out.WriteString(`\f`)
			case '\n':
				out.WriteString(`\n`)
			case '\r':
				out.WriteString(`\r`)
			case '\t':
				out.WriteString(`\t`)
			default:
				if r < 0x20 {
					fmt.Fprintf(out, `\u%04x`, r)
				} else {
					out.WriteRune(r)
				}
			}
		}
		out.WriteByte('"')
	case []any:
		out.WriteByte('[')
		for i, item := range v {
			if i > 0 {
				out.WriteByte(',')
			}
			writeJSON(out, item)
		}
		out.WriteByte(']')
	case object:
		out.WriteByte('{')
		for i, kv := range v {
			if i > 0 {
				out.WriteByte(',')
			}
			writeJSON(out, kv.key)
			out.WriteByte(':')
			writeJSON(out, kv.val)
		}
		out.WriteByte('}')
	default:
		panic(fmt.Sprintf("writeJSON: unexpected %T", v))
	}
}
