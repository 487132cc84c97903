package polarway_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

const (
	bigRows      = 6_000_000
	bigBatchRows = 65_536
	// Live-heap bound while storing or streaming the big dataset (166 MiB of Arrow data). Measured
	// 6 MiB storing and 15 MiB streaming (one batch, one chunk, up to gRPC's 8 MiB stream window);
	// the bound leaves a wide margin and is still far below the dataset.
	heapBound = 64 << 20
)

var bigSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "value", Type: arrow.PrimitiveTypes.Float64},
	{Name: "sym", Type: arrow.BinaryTypes.String},
}, nil)

// genReader makes the big dataset batch by batch, so the upload never holds it whole.
type genReader struct {
	refs   atomic.Int64
	next   int64
	cur    arrow.RecordBatch
	sample func()
}

func (g *genReader) Retain()                        { g.refs.Add(1) }
func (g *genReader) Release()                       { g.refs.Add(-1) }
func (g *genReader) Schema() *arrow.Schema          { return bigSchema }
func (g *genReader) Err() error                     { return nil }
func (g *genReader) RecordBatch() arrow.RecordBatch { return g.cur }
func (g *genReader) Record() arrow.RecordBatch      { return g.cur }
func (g *genReader) Next() bool {
	if g.cur != nil {
		g.cur.Release()
		g.cur = nil
	}
	g.sample()
	if g.next >= bigRows {
		return false
	}
	n := min(bigBatchRows, bigRows-g.next)
	b := array.NewRecordBuilder(memory.DefaultAllocator, bigSchema)
	defer b.Release()
	ids, vals, syms := b.Field(0).(*array.Int64Builder), b.Field(1).(*array.Float64Builder), b.Field(2).(*array.StringBuilder)
	for i := g.next; i < g.next+n; i++ {
		ids.Append(i)
		vals.Append(float64(i) * 0.5)
		syms.Append(fmt.Sprintf("SYM%06d", i%1000))
	}
	g.next += n
	g.cur = b.NewRecordBatch()
	return true
}

// heapSampler tracks the peak live heap, forcing a GC every few samples so that HeapAlloc counts
// live objects rather than garbage not yet collected.
type heapSampler struct {
	n        int
	peakLive uint64
}

func (h *heapSampler) sample() {
	h.n++
	if h.n%4 != 0 {
		return
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.peakLive = max(h.peakLive, ms.HeapAlloc)
}

func TestStreamLargeDataset(t *testing.T) {
	if testing.Short() {
		t.Skip("large dataset")
	}
	ctx := ctxFor(t, 8*time.Minute)
	c := dial(t, shared.addr)

	var up heapSampler
	start := time.Now()
	info, err := c.Store(ctx, "go_big", &genReader{sample: up.sample})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stored %d rows (%d bytes of Parquet) in %v; client peak live heap %.1f MiB",
		info.Rows, info.Bytes, time.Since(start).Round(time.Millisecond), float64(up.peakLive)/(1<<20))
	if info.Rows != bigRows {
		t.Fatalf("stored %d rows", info.Rows)
	}

	var down heapSampler
	start = time.Now()
	rs, err := c.LoadStream(ctx, "go_big")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Release()
	var rows, batches, arrowBytes int64
	var sum float64
	for rs.Next() {
		rec := rs.RecordBatch()
		batches++
		ids := rec.Column(0).(*array.Int64).Int64Values()
		vals := rec.Column(1).(*array.Float64).Float64Values()
		syms := rec.Column(2).(*array.String)
		for i, id := range ids {
			if id != rows+int64(i) || syms.Value(i) != fmt.Sprintf("SYM%06d", id%1000) {
				t.Fatalf("row %d: id %d sym %q", rows+int64(i), id, syms.Value(i))
			}
			sum += vals[i]
		}
		rows += int64(len(ids))
		arrowBytes += int64(len(ids))*(8+8+4) + int64(len(syms.ValueBytes()))
		down.sample()
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("streamed %d rows in %d batches (%.0f MiB of Arrow data) in %v; client peak live heap %.1f MiB",
		rows, batches, float64(arrowBytes)/(1<<20), time.Since(start).Round(time.Millisecond), float64(down.peakLive)/(1<<20))
	if rows != bigRows || sum != 0.5*float64(bigRows)*float64(bigRows-1)/2 {
		t.Fatalf("streamed %d rows, sum %v", rows, sum)
	}
	if arrowBytes < 2*heapBound {
		t.Fatalf("the dataset (%d bytes) is too small to show a bound of %d", arrowBytes, heapBound)
	}
	if up.peakLive > heapBound || down.peakLive > heapBound {
		t.Fatalf("client live heap: store %d, stream %d bytes, bound %d", up.peakLive, down.peakLive, heapBound)
	}
}
