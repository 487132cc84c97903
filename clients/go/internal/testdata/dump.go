package testdata

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Dump renders a table as canonical JSON, the format every client's cross-language helper prints
// (described in clients/go/README.md):
//
//	{"rows": N, "columns": [{"name": "...", "type": "...", "values": [...]}, ...]}
//
// Integers, temporal values (as their stored integer: days, or ticks of the type's unit) and
// decimals are strings, so 64-bit values survive JSON; floats are JSON numbers (float32 widened to
// float64); binary is lowercase hex; lists are arrays, structs objects, dictionaries their
// decoded values; null is null.
func Dump(tbl arrow.Table) ([]byte, error) {
	type column struct {
		Name   string `json:"name"`
		Type   string `json:"type"`
		Values []any  `json:"values"`
	}
	out := struct {
		Rows    int64    `json:"rows"`
		Columns []column `json:"columns"`
	}{Rows: tbl.NumRows(), Columns: []column{}}
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
		out.Columns = append(out.Columns, column{Name: col.Name(), Type: typ, Values: values})
	}
	return json.Marshal(out)
}

// TypeName is the canonical spelling of a type: int8..uint64, float32, float64, bool, utf8,
// large_utf8, binary, date32, timestamp[UNIT,TZ] (TZ empty when naive), duration[UNIT],
// time64[UNIT], decimal128(P,S), list<T>, struct<name:T,...>, dictionary<INDEX,VALUE>, with UNIT
// one of s, ms, us, ns.
func TypeName(t arrow.DataType) (string, error) {
	switch t := t.(type) {
	case *arrow.Int8Type, *arrow.Int16Type, *arrow.Int32Type, *arrow.Int64Type,
		*arrow.Uint8Type, *arrow.Uint16Type, *arrow.Uint32Type, *arrow.Uint64Type,
		*arrow.Float32Type, *arrow.Float64Type, *arrow.BinaryType, *arrow.Date32Type:
		return t.Name(), nil
	case *arrow.BooleanType:
		return "bool", nil
	case *arrow.StringType:
		return "utf8", nil
	case *arrow.LargeStringType:
		return "large_utf8", nil
	case *arrow.TimestampType:
		return fmt.Sprintf("timestamp[%s,%s]", t.Unit, t.TimeZone), nil
	case *arrow.DurationType:
		return fmt.Sprintf("duration[%s]", t.Unit), nil
	case *arrow.Time64Type:
		return fmt.Sprintf("time64[%s]", t.Unit), nil
	case *arrow.Decimal128Type:
		return fmt.Sprintf("decimal128(%d,%d)", t.Precision, t.Scale), nil
	case *arrow.ListType:
		elem, err := TypeName(t.Elem())
		return "list<" + elem + ">", err
	case *arrow.StructType:
		parts := make([]string, t.NumFields())
		for i, f := range t.Fields() {
			n, err := TypeName(f.Type)
			if err != nil {
				return "", err
			}
			parts[i] = f.Name + ":" + n
		}
		return "struct<" + strings.Join(parts, ",") + ">", nil
	case *arrow.DictionaryType:
		idx, err := TypeName(t.IndexType)
		if err != nil {
			return "", err
		}
		val, err := TypeName(t.ValueType)
		return "dictionary<" + idx + "," + val + ">", err
	}
	return "", fmt.Errorf("no canonical name for type %s", t)
}

func value(a arrow.Array, i int) (any, error) {
	if a.IsNull(i) {
		return nil, nil
	}
	switch a := a.(type) {
	case *array.Int8:
		return fmt.Sprint(a.Value(i)), nil
	case *array.Int16:
		return fmt.Sprint(a.Value(i)), nil
	case *array.Int32:
		return fmt.Sprint(a.Value(i)), nil
	case *array.Int64:
		return fmt.Sprint(a.Value(i)), nil
	case *array.Uint8:
		return fmt.Sprint(a.Value(i)), nil
	case *array.Uint16:
		return fmt.Sprint(a.Value(i)), nil
	case *array.Uint32:
		return fmt.Sprint(a.Value(i)), nil
	case *array.Uint64:
		return fmt.Sprint(a.Value(i)), nil
	case *array.Float32:
		return float64(a.Value(i)), nil
	case *array.Float64:
		return a.Value(i), nil
	case *array.Boolean:
		return a.Value(i), nil
	case *array.String:
		return a.Value(i), nil
	case *array.LargeString:
		return a.Value(i), nil
	case *array.Binary:
		return hex.EncodeToString(a.Value(i)), nil
	case *array.Date32:
		return fmt.Sprint(int32(a.Value(i))), nil
	case *array.Timestamp:
		return fmt.Sprint(int64(a.Value(i))), nil
	case *array.Duration:
		return fmt.Sprint(int64(a.Value(i))), nil
	case *array.Time64:
		return fmt.Sprint(int64(a.Value(i))), nil
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		return decimalString(a.Value(i).BigInt(), scale), nil
	case *array.List:
		start, end := a.ValueOffsets(i)
		out := []any{}
		for j := start; j < end; j++ {
			v, err := value(a.ListValues(), int(j))
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case *array.Struct:
		out := map[string]any{}
		st := a.DataType().(*arrow.StructType)
		for f := 0; f < a.NumField(); f++ {
			v, err := value(a.Field(f), i)
			if err != nil {
				return nil, err
			}
			out[st.Field(f).Name] = v
		}
		return out, nil
	case *array.Dictionary:
		return value(a.Dictionary(), a.GetValueIndex(i))
	}
	return nil, fmt.Errorf("no canonical rendering for %s", a.DataType())
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
