// Quickstart: store a small table, load it back, and run SQL over it.
//
//	go run ./examples/quickstart [-addr localhost:50052]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	polarway "github.com/polarway/polarway/clients/go"
)

func main() {
	addr := flag.String("addr", "localhost:50052", "server address")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	c, err := polarway.Dial(ctx, *addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A table with a symbol and a price column.
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "symbol", Type: arrow.BinaryTypes.String},
		{Name: "price", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"BTC", "ETH", "SOL", "BTC"}, nil)
	b.Field(1).(*array.Int64Builder).AppendValues([]int64{50000, 3000, 100, 52000}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()

	info, err := c.Store(ctx, "trades_20260203", rec)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("stored %s: version %d, %d rows\n", info.Name, info.Version, info.Rows)

	tbl, err := c.Load(ctx, "trades_20260203")
	if err != nil {
		log.Fatal(err)
	}
	defer tbl.Release()
	fmt.Printf("loaded %d rows, %d columns\n", tbl.NumRows(), tbl.NumCols())

	avg, err := c.Query(ctx, "SELECT symbol, AVG(price) AS avg_price FROM trades_20260203 GROUP BY symbol ORDER BY symbol")
	if err != nil {
		log.Fatal(err)
	}
	defer avg.Release()
	rdr := array.NewTableReader(avg, 0)
	defer rdr.Release()
	for rdr.Next() {
		r := rdr.RecordBatch()
		syms, prices := r.Column(0).(*array.String), r.Column(1).(*array.Float64)
		for i := 0; i < int(r.NumRows()); i++ {
			fmt.Printf("%s %.1f\n", syms.Value(i), prices.Value(i))
		}
	}
}
