package testdata

import (
	"math"
	"math/big"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// XlangSchema is the shared wide table of the cross-language test (docs/cross-language.md): the
// types all four clients both produce and read faithfully. Every column is nullable.
var XlangSchema = arrow.NewSchema([]arrow.Field{
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
	{Name: "bool", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "str", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "large_str", Type: arrow.BinaryTypes.LargeString, Nullable: true},
	{Name: "bin", Type: arrow.BinaryTypes.Binary, Nullable: true},
	{Name: "date", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
	{Name: "ts_ms", Type: &arrow.TimestampType{Unit: arrow.Millisecond}, Nullable: true},
	{Name: "ts_us_utc", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	{Name: "ts_ns_tokyo", Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "Asia/Tokyo"}, Nullable: true},
	{Name: "dur_ms", Type: arrow.FixedWidthTypes.Duration_ms, Nullable: true},
	{Name: "dur_ns", Type: arrow.FixedWidthTypes.Duration_ns, Nullable: true},
	{Name: "time_ns", Type: arrow.FixedWidthTypes.Time64ns, Nullable: true},
	{Name: "dec", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
	{Name: "big_dec", Type: &arrow.Decimal128Type{Precision: 38, Scale: 9}, Nullable: true},
	{Name: "list_i64", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64), Nullable: true},
	{Name: "list_str", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	{Name: "point", Type: arrow.StructOf(
		arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true},
	), Nullable: true},
	{Name: "cat", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}, Nullable: true},
	{Name: "fsl", Type: arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Int64), Nullable: true},
	{Name: "nothing", Type: arrow.Null, Nullable: true},
}, nil)

// XlangRecord is the fixed 5-row batch of XlangSchema; the other clients build the same values
// (docs/cross-language.md). Release it when done.
func XlangRecord(mem memory.Allocator) arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, XlangSchema)
	defer b.Release()
	// valid: 5 rows, null at the given rows.
	valid := func(nulls ...int) []bool {
		v := []bool{true, true, true, true, true}
		for _, i := range nulls {
			v[i] = false
		}
		return v
	}
	f := b.Field
	f(0).(*array.Int8Builder).AppendValues([]int8{math.MinInt8, math.MaxInt8, 0, 0, -1}, valid(2))
	f(1).(*array.Int16Builder).AppendValues([]int16{math.MinInt16, math.MaxInt16, 0, 0, 7}, valid(3))
	f(2).(*array.Int32Builder).AppendValues([]int32{math.MinInt32, math.MaxInt32, 0, 0, 42}, valid(2))
	f(3).(*array.Int64Builder).AppendValues([]int64{math.MinInt64, math.MaxInt64, 9007199254740993, 0, 0}, valid(3))
	f(4).(*array.Uint8Builder).AppendValues([]uint8{0, math.MaxUint8, 0, 1, 200}, valid(2))
	f(5).(*array.Uint16Builder).AppendValues([]uint16{0, math.MaxUint16, 1, 0, 60000}, valid(3))
	f(6).(*array.Uint32Builder).AppendValues([]uint32{0, math.MaxUint32, 0, 1, 4000000000}, valid(2))
	f(7).(*array.Uint64Builder).AppendValues([]uint64{0, math.MaxUint64, 9007199254740993, 0, 1}, valid(3))
	f(8).(*array.Float32Builder).AppendValues([]float32{0.1, float32(math.Copysign(0, -1)), float32(math.Inf(1)), 0, -math.MaxFloat32}, valid(3))
	f(9).(*array.Float64Builder).AppendValues([]float64{0.1, 5e-324, math.NaN(), 0, math.Inf(-1)}, valid(3))
	f(10).(*array.BooleanBuilder).AppendValues([]bool{true, false, false, true, false}, valid(2))
	f(11).(*array.StringBuilder).AppendValues([]string{"BTC", "", "", "naïve ☃ \"q\" \\ \t\n", "ctl \x01 🚀"}, valid(2))
	f(12).(*array.LargeStringBuilder).AppendValues([]string{"large", "", "日本語", "", "x"}, valid(1))
	f(13).(*array.BinaryBuilder).AppendValues([][]byte{{0, 1, 2, 255}, {}, nil, {0xde, 0xad, 0xbe, 0xef}, {10, 13}}, valid(2))
	f(14).(*array.Date32Builder).AppendValues([]arrow.Date32{0, -719162, 0, 2932896, 20487}, valid(2))
	f(15).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{0, -1, 0, 1770129015123, 253402300799999}, valid(2))
	f(16).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{1770129015123456, 0, 0, -62135596800000000, 1}, valid(2))
	f(17).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{1770129015123456789, -1, 0, 4102444800000000000, 0}, valid(2))
	f(18).(*array.DurationBuilder).AppendValues([]arrow.Duration{0, -1000, 0, 86400000, math.MaxInt64}, valid(2))
	f(19).(*array.DurationBuilder).AppendValues([]arrow.Duration{90000000000, -5, 0, 1, 0}, valid(2))
	f(20).(*array.Time64Builder).AppendValues([]arrow.Time64{0, 86399999999999, 0, 52215123456789, 1}, valid(2))
	f(21).(*array.Decimal128Builder).AppendValues([]decimal128.Num{
		decimal128.FromI64(12345), decimal128.FromI64(-9999999999), {}, decimal128.FromI64(0), decimal128.FromI64(1)}, valid(2))
	max38 := new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(38), nil), big.NewInt(1))
	f(22).(*array.Decimal128Builder).AppendValues([]decimal128.Num{
		decimal128.FromBigInt(max38), decimal128.FromI64(-1), {}, decimal128.FromI64(0), decimal128.FromI64(1500000000)}, valid(2))

	lb := f(23).(*array.ListBuilder)
	li := lb.ValueBuilder().(*array.Int64Builder)
	lb.Append(true)
	li.AppendValues([]int64{1, 2, 3}, nil)
	lb.Append(true) // []
	lb.AppendNull()
	lb.Append(true)
	li.Append(math.MinInt64)
	li.AppendNull()
	lb.Append(true)
	li.Append(0)

	ls := f(24).(*array.ListBuilder)
	lsv := ls.ValueBuilder().(*array.StringBuilder)
	ls.Append(true)
	lsv.AppendValues([]string{"a", "b"}, nil)
	ls.AppendNull()
	ls.Append(true) // []
	ls.Append(true)
	lsv.AppendNull()
	lsv.Append("ü")
	ls.Append(true)
	lsv.Append("x")

	sb := f(25).(*array.StructBuilder)
	sb.AppendValues(valid(2))
	sb.FieldBuilder(0).(*array.Int32Builder).AppendValues([]int32{10, 0, 0, -1, 0}, valid(1, 2))
	sb.FieldBuilder(1).(*array.StringBuilder).AppendValues([]string{"BTC", "only label", "", "", ""}, valid(2, 3))

	cb := f(26).(*array.BinaryDictionaryBuilder)
	for i, s := range []string{"buy", "sell", "", "buy", ""} {
		if i == 2 {
			cb.AppendNull()
		} else if err := cb.AppendString(s); err != nil {
			panic(err)
		}
	}

	fb := f(27).(*array.FixedSizeListBuilder)
	fv := fb.ValueBuilder().(*array.Int64Builder)
	fb.Append(true)
	fv.AppendValues([]int64{1, 2}, nil)
	fb.AppendNull()
	fb.Append(true)
	fv.AppendValues([]int64{math.MaxInt64, 0}, []bool{true, false})
	fb.Append(true)
	fv.AppendValues([]int64{0, 0}, nil)
	fb.Append(true)
	fv.AppendValues([]int64{-1, -2}, nil)

	f(28).(*array.NullBuilder).AppendNulls(5)
	return b.NewRecordBatch()
}
