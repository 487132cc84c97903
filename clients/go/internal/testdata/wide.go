// Package testdata holds the wide-typed table the tests and cmd/xlang store, and the canonical JSON
// dump that lets the four clients compare what they load.
package testdata

import (
	"math"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// WideSchema has one column per type the clients must agree on; every column is nullable.
var WideSchema = arrow.NewSchema([]arrow.Field{
	{Name: "i8", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
	{Name: "i16", Type: arrow.PrimitiveTypes.Int16, Nullable: true},
	{Name: "i32", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "i64", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "u8", Type: arrow.PrimitiveTypes.Uint8, Nullable: true},
	{Name: "u16", Type: arrow.PrimitiveTypes.Uint16, Nullable: true},
	{Name: "u32", Type: arrow.PrimitiveTypes.Uint32, Nullable: true},
	{Name: "u64", Type: arrow.PrimitiveTypes.Uint64, Nullable: true},
	{Name: "f32", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	{Name: "f64", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "flag", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "str", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "large_str", Type: arrow.BinaryTypes.LargeString, Nullable: true},
	{Name: "bin", Type: arrow.BinaryTypes.Binary, Nullable: true},
	{Name: "date", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
	{Name: "ts_us_utc", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	{Name: "ts_ns_tokyo", Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "Asia/Tokyo"}, Nullable: true},
	{Name: "dur_ns", Type: arrow.FixedWidthTypes.Duration_ns, Nullable: true},
	{Name: "time_us", Type: arrow.FixedWidthTypes.Time64us, Nullable: true},
	{Name: "dec", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
	{Name: "list_i64", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64), Nullable: true},
	{Name: "point", Type: arrow.StructOf(
		arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true},
	), Nullable: true},
	{Name: "cat", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}, Nullable: true},
}, nil)

// WideRecord is a fixed 4-row batch of WideSchema: ordinary values, extremes, all nulls, and a
// row mixing nulls inside lists and structs. Release it when done.
func WideRecord(mem memory.Allocator) arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, WideSchema)
	defer b.Release()
	const rows = 4
	null := func(row int) bool { return row == 2 }
	// Each column gets 4 values; row 2 is null everywhere.
	ts := time.Date(2026, 2, 3, 14, 30, 15, 123456789, time.UTC)
	for row := 0; row < rows; row++ {
		if null(row) {
			for i := range b.Fields() {
				b.Field(i).AppendNull()
			}
			continue
		}
		ext := row == 1
		pick := func(normal, extreme int64) int64 {
			if ext {
				return extreme
			}
			return normal + int64(row)
		}
		b.Field(0).(*array.Int8Builder).Append(int8(pick(-7, math.MinInt8)))
		b.Field(1).(*array.Int16Builder).Append(int16(pick(-300, math.MaxInt16)))
		b.Field(2).(*array.Int32Builder).Append(int32(pick(70000, math.MinInt32)))
		b.Field(3).(*array.Int64Builder).Append(pick(9007199254740993, math.MaxInt64)) // > 2^53
		if ext {
			b.Field(4).(*array.Uint8Builder).Append(math.MaxUint8)
			b.Field(5).(*array.Uint16Builder).Append(math.MaxUint16)
			b.Field(6).(*array.Uint32Builder).Append(math.MaxUint32)
			b.Field(7).(*array.Uint64Builder).Append(math.MaxUint64)
			b.Field(8).(*array.Float32Builder).Append(-3.25e10)
			b.Field(9).(*array.Float64Builder).Append(-1.7976931348623157e308)
		} else {
			b.Field(4).(*array.Uint8Builder).Append(uint8(200 + row))
			b.Field(5).(*array.Uint16Builder).Append(uint16(60000 + row))
			b.Field(6).(*array.Uint32Builder).Append(uint32(4000000000 + row))
			b.Field(7).(*array.Uint64Builder).Append(uint64(18000000000000000000) + uint64(row))
			b.Field(8).(*array.Float32Builder).Append(1.5 + float32(row))
			b.Field(9).(*array.Float64Builder).Append(0.1 + float64(row))
		}
		b.Field(10).(*array.BooleanBuilder).Append(row%2 == 0)
		strs := []string{"BTC", "", "", "naïve ☃ \"quoted\"\n"}
		b.Field(11).(*array.StringBuilder).Append(strs[row])
		b.Field(12).(*array.LargeStringBuilder).Append("large " + strs[row])
		bins := [][]byte{{0, 1, 2, 255}, {}, nil, {0xde, 0xad, 0xbe, 0xef}}
		b.Field(13).(*array.BinaryBuilder).Append(bins[row])
		b.Field(14).(*array.Date32Builder).Append(arrow.Date32(pick(20487, -719162))) // 2026-02-03, 0001-01-01
		b.Field(15).(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixMicro() + int64(row)))
		b.Field(16).(*array.TimestampBuilder).Append(arrow.Timestamp(pick(ts.UnixNano(), -1)))
		b.Field(17).(*array.DurationBuilder).Append(arrow.Duration(pick(90*int64(time.Second), -5)))
		b.Field(18).(*array.Time64Builder).Append(arrow.Time64(pick(int64(14*3600+30*60)*1e6+123456, 86399999999)))
		b.Field(19).(*array.Decimal128Builder).Append(decimal128.FromI64(pick(12345, -99999999)))
		lb := b.Field(20).(*array.ListBuilder)
		vb := lb.ValueBuilder().(*array.Int64Builder)
		lb.Append(true)
		switch row {
		case 0:
			vb.AppendValues([]int64{1, 2, 3}, nil)
		case 3:
			vb.Append(math.MinInt64)
			vb.AppendNull()
		}
		sb := b.Field(21).(*array.StructBuilder)
		sb.Append(true)
		if row == 3 {
			sb.FieldBuilder(0).AppendNull()
			sb.FieldBuilder(1).(*array.StringBuilder).Append("only label")
		} else {
			sb.FieldBuilder(0).(*array.Int32Builder).Append(int32(pick(10, -1)))
			sb.FieldBuilder(1).(*array.StringBuilder).Append(strs[row])
		}
		cats := []string{"buy", "sell", "", "buy"}
		if err := b.Field(22).(*array.BinaryDictionaryBuilder).AppendString(cats[row]); err != nil {
			panic(err)
		}
	}
	return b.NewRecordBatch()
}
