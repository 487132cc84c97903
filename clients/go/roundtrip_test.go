package polarway_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	polarway "github.com/polarway/polarway/clients/go"
	"github.com/polarway/polarway/clients/go/internal/testdata"
)

// requireEqual fails unless got has want's schema and values (chunking may differ).
func requireEqual(t *testing.T, want, got arrow.Table) {
	t.Helper()
	if !want.Schema().Equal(got.Schema()) {
		t.Fatalf("schema differs:\nwant %s\ngot  %s", want.Schema(), got.Schema())
	}
	if want.NumRows() != got.NumRows() {
		t.Fatalf("rows: want %d, got %d", want.NumRows(), got.NumRows())
	}
	for i := 0; i < int(want.NumCols()); i++ {
		if !array.ChunkedEqual(want.Column(i).Data(), got.Column(i).Data()) {
			t.Errorf("column %s differs:\nwant %v\ngot  %v", want.Column(i).Name(), want.Column(i).Data(), got.Column(i).Data())
		}
	}
	if !array.TableEqual(want, got) {
		t.Fatal("array.TableEqual: tables differ")
	}
}

func tableOf(recs ...arrow.RecordBatch) arrow.Table {
	return array.NewTableFromRecords(recs[0].Schema(), recs)
}

func TestWideTypesRoundTrip(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	c := dial(t, shared.addr)
	rec := testdata.WideRecord(memory.DefaultAllocator)
	defer rec.Release()

	info, err := c.Store(ctx, "go_wide", rec)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "go_wide" || info.Version != 1 || info.Rows != 4 || info.Bytes == 0 {
		t.Fatalf("store returned %+v", info)
	}
	got, err := c.Load(ctx, "go_wide")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	want := tableOf(rec)
	defer want.Release()
	requireEqual(t, want, got)

	d, err := c.Describe(ctx, "go_wide")
	if err != nil {
		t.Fatal(err)
	}
	if d.Rows != 4 || d.Version != 1 || len(d.Columns) != len(testdata.WideSchema.Fields()) {
		t.Fatalf("describe returned %+v", d)
	}
	for i, col := range d.Columns {
		if col.Name != testdata.WideSchema.Field(i).Name || col.DataType == "" || !col.Nullable {
			t.Errorf("column %d described as %+v", i, col)
		}
	}
	if time.Since(d.Created) > time.Hour || time.Since(d.Created) < -time.Minute {
		t.Errorf("created %v is not now", d.Created)
	}
}

func TestEmptyTableRoundTrip(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	c := dial(t, shared.addr)
	b := array.NewRecordBuilder(memory.DefaultAllocator, testdata.WideSchema)
	empty := b.NewRecordBatch()
	b.Release()
	defer empty.Release()

	info, err := c.Store(ctx, "go_empty", empty)
	if err != nil {
		t.Fatal(err)
	}
	if info.Rows != 0 {
		t.Fatalf("rows %d", info.Rows)
	}
	got, err := c.Load(ctx, "go_empty")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	want := tableOf(empty)
	defer want.Release()
	requireEqual(t, want, got)
}

// Every accepted input shape stores the same data.
func TestStoreInputShapes(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	c := dial(t, shared.addr)
	rec := testdata.WideRecord(memory.DefaultAllocator)
	defer rec.Release()
	batches := []arrow.RecordBatch{rec.NewSlice(0, 1), rec.NewSlice(1, 3), rec.NewSlice(3, 4)}
	want := tableOf(batches...)
	defer want.Release()
	reader, err := array.NewRecordReader(rec.Schema(), batches)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Release()

	for name, data := range map[string]any{
		"go_shape_slice":  batches,
		"go_shape_table":  want,
		"go_shape_reader": reader,
	} {
		if _, err := c.Store(ctx, name, data); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := c.Load(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		requireEqual(t, want, got)
		got.Release()
	}
	if _, err := c.Store(ctx, "go_shape_bad", "not arrow"); !errors.Is(err, polarway.ErrInvalidArgument) {
		t.Fatalf("storing a string: %v", err)
	}
}

func int64Record(name string, vals ...int64) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{{Name: name, Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues(vals, nil)
	return b.NewRecordBatch()
}

func TestVersionsAndProjection(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	c := dial(t, shared.addr)
	v1 := int64Record("x", 1, 2, 3)
	defer v1.Release()
	rec := testdata.WideRecord(memory.DefaultAllocator)
	defer rec.Release()

	if info, err := c.Store(ctx, "go_versions", v1); err != nil || info.Version != 1 {
		t.Fatalf("v1: %+v %v", info, err)
	}
	if info, err := c.Store(ctx, "go_versions", rec, polarway.IfVersion(1)); err != nil || info.Version != 2 {
		t.Fatalf("v2: %+v %v", info, err)
	}
	old, err := c.Load(ctx, "go_versions", polarway.AtVersion(1))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Release()
	want1 := tableOf(v1)
	defer want1.Release()
	requireEqual(t, want1, old)

	proj, err := c.Load(ctx, "go_versions", polarway.Columns("str", "i64", "point"))
	if err != nil {
		t.Fatal(err)
	}
	defer proj.Release()
	wantProj := tableOf(array.NewRecordBatch(
		arrow.NewSchema([]arrow.Field{testdata.WideSchema.Field(11), testdata.WideSchema.Field(3), testdata.WideSchema.Field(21)}, nil),
		[]arrow.Array{rec.Column(11), rec.Column(3), rec.Column(21)}, rec.NumRows()))
	defer wantProj.Release()
	requireEqual(t, wantProj, proj)

	d, err := c.Describe(ctx, "go_versions", polarway.AtVersion(1))
	if err != nil || d.Version != 1 || d.Rows != 3 || len(d.Columns) != 1 || d.Columns[0].DataType != "Int64" {
		t.Fatalf("describe v1: %+v %v", d, err)
	}
	if _, err := c.Load(ctx, "go_versions", polarway.AtVersion(99)); !errors.Is(err, polarway.ErrNotFound) {
		t.Fatalf("version 99: %v", err)
	}
}

func TestStoreBatchAllOrNothing(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	c := dial(t, shared.addr)
	a, b := int64Record("a", 1, 2), int64Record("b", 3, 4, 5)
	defer a.Release()
	defer b.Release()

	infos, err := c.StoreBatch(ctx, []polarway.Dataset{{Name: "go_batch_a", Data: a}, {Name: "go_batch_b", Data: b}})
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Name != "go_batch_a" || infos[0].Rows != 2 || infos[1].Name != "go_batch_b" || infos[1].Rows != 3 {
		t.Fatalf("infos %+v", infos)
	}
	for name, rec := range map[string]arrow.RecordBatch{"go_batch_a": a, "go_batch_b": b} {
		got, err := c.Load(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		want := tableOf(rec)
		requireEqual(t, want, got)
		want.Release()
		got.Release()
	}

	// The second dataset's condition fails: the first is not committed either.
	_, err = c.StoreBatch(ctx, []polarway.Dataset{
		{Name: "go_batch_new", Data: a},
		{Name: "go_batch_b", Data: a, Options: []polarway.StoreOption{polarway.IfAbsent()}},
	})
	if !errors.Is(err, polarway.ErrAlreadyExists) {
		t.Fatalf("failing batch: %v", err)
	}
	if _, err := c.Describe(ctx, "go_batch_new"); !errors.Is(err, polarway.ErrNotFound) {
		t.Fatalf("go_batch_new after a failed batch: %v", err)
	}
	if d, err := c.Describe(ctx, "go_batch_b"); err != nil || d.Version != 1 {
		t.Fatalf("go_batch_b after a failed batch: %+v %v", d, err)
	}
}

func TestCatalog(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	c := dial(t, shared.addr)
	rec := int64Record("x", 7)
	defer rec.Release()
	for _, n := range []string{"go_cat_b", "go_cat_a", "go_cat_c"} {
		if _, err := c.Store(ctx, n, rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Store(ctx, "go_cat_a", rec); err != nil {
		t.Fatal(err)
	}
	list, err := c.List(ctx, "go_cat_")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list {
		names = append(names, fmt.Sprintf("%s@%d/%d", d.Name, d.Version, d.Rows))
	}
	if !slices.Equal(names, []string{"go_cat_a@2/1", "go_cat_b@1/1", "go_cat_c@1/1"}) {
		t.Fatalf("list: %v", names)
	}
	v, err := c.Delete(ctx, "go_cat_a")
	if err != nil || v != 2 {
		t.Fatalf("delete: %d %v", v, err)
	}
	if _, err := c.Load(ctx, "go_cat_a"); !errors.Is(err, polarway.ErrNotFound) {
		t.Fatalf("load after delete: %v", err)
	}
	if list, _ := c.List(ctx, "go_cat_"); len(list) != 2 {
		t.Fatalf("list after delete: %+v", list)
	}

	before, err := c.CacheStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		tbl, err := c.Load(ctx, "go_cat_b")
		if err != nil {
			t.Fatal(err)
		}
		tbl.Release()
	}
	after, err := c.CacheStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Hits+after.Misses < before.Hits+before.Misses+3 || after.Hits < before.Hits+2 || after.Capacity == 0 {
		t.Fatalf("cache stats before %+v after %+v", before, after)
	}
	if after.HitRate <= 0 || after.HitRate > 1 {
		t.Fatalf("hit rate %v", after.HitRate)
	}

	h, err := c.Health(ctx)
	if err != nil || h.Status != "OK" || h.Version == "" || h.HandleStore != "external" {
		t.Fatalf("health %+v %v", h, err)
	}
}

func TestQuery(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	c := dial(t, shared.addr)
	rec := int64Record("price", 10, 20, 30, 40)
	defer rec.Release()
	if _, err := c.Store(ctx, "go_prices", rec); err != nil {
		t.Fatal(err)
	}
	res, err := c.Query(ctx, "SELECT sum(price) AS total, count(*) AS n FROM go_prices WHERE price > 15")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	if res.NumRows() != 1 || res.Schema().Field(0).Name != "total" {
		t.Fatalf("result %v", res.Schema())
	}
	total := fmt.Sprint(res.Column(0).Data().Chunk(0).(interface{ ValueStr(int) string }).ValueStr(0))
	n := res.Column(1).Data().Chunk(0).(*array.Int64).Value(0)
	if total != "90" || n != 3 {
		t.Fatalf("total %s n %d", total, n)
	}

	// The data dir's Parquet is visible as the user guide's parquet_scan shows.
	res2, err := c.Query(ctx, fmt.Sprintf("SELECT count(*) AS n FROM parquet_scan('%s/data/cold/go_prices.parquet')", shared.dir))
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Release()
	if got := res2.Column(0).Data().Chunk(0).(*array.Int64).Value(0); got != 4 {
		t.Fatalf("parquet_scan count %d", got)
	}

	info, err := c.QueryInto(ctx, "SELECT price * 2 AS doubled FROM go_prices ORDER BY price", "go_doubled")
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "go_doubled" || info.Rows != 4 || info.Version != 1 {
		t.Fatalf("query into: %+v", info)
	}
	got, err := c.Load(ctx, "go_doubled")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	want := int64Record("doubled", 20, 40, 60, 80)
	defer want.Release()
	wantT := tableOf(want)
	defer wantT.Release()
	if !array.ChunkedEqual(wantT.Column(0).Data(), got.Column(0).Data()) {
		t.Fatalf("go_doubled = %v", got.Column(0).Data())
	}

	qs, err := c.QueryStream(ctx, "SELECT * FROM range(100000) t(i)")
	if err != nil {
		t.Fatal(err)
	}
	defer qs.Release()
	var rows, sum int64
	for qs.Next() {
		col := qs.RecordBatch().Column(0).(*array.Int64)
		rows += int64(col.Len())
		for _, v := range col.Int64Values() {
			sum += v
		}
	}
	if err := qs.Err(); err != nil || rows != 100000 || sum != 99999*100000/2 {
		t.Fatalf("streamed %d rows, sum %d, err %v", rows, sum, err)
	}
}

// A loaded stream can be stored directly: batches flow through without being collected.
func TestCopyThroughStream(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	c := dial(t, shared.addr)
	rec := testdata.WideRecord(memory.DefaultAllocator)
	defer rec.Release()
	if _, err := c.Store(ctx, "go_copy_src", rec); err != nil {
		t.Fatal(err)
	}
	rs, err := c.LoadStream(ctx, "go_copy_src")
	if err != nil {
		t.Fatal(err)
	}
	if rs.Info().Name != "go_copy_src" || rs.Info().Rows != 4 {
		t.Fatalf("stream info %+v", rs.Info())
	}
	if _, err := c.Store(ctx, "go_copy_dst", rs); err != nil {
		t.Fatal(err)
	}
	rs.Release()
	got, err := c.Load(ctx, "go_copy_dst")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	want := tableOf(rec)
	defer want.Release()
	requireEqual(t, want, got)
}

// Many goroutines share one client (run with -race by scripts/test-go.sh).
func TestConcurrentUse(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	c := dial(t, shared.addr)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				name := fmt.Sprintf("go_conc_%d", g)
				for i := range 5 {
					rec := int64Record("v", int64(g), int64(i))
					info, err := c.Store(ctx, name, rec)
					rec.Release()
					if err != nil {
						return err
					}
					if info.Version != uint64(i+1) {
						return fmt.Errorf("%s: version %d after %d stores", name, info.Version, i+1)
					}
					tbl, err := c.Load(ctx, name)
					if err != nil {
						return err
					}
					got := tbl.Column(0).Data().Chunk(0).(*array.Int64).Int64Values()
					ok := slices.Equal(got, []int64{int64(g), int64(i)})
					tbl.Release()
					if !ok {
						return fmt.Errorf("%s: loaded %v", name, got)
					}
					if _, err := c.List(ctx, "go_conc_"); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// Every call names its dataset in x-polarway-key and carries the token; checked on the way out
// with an interceptor (and accepted by a server that requires the token).
func TestHeaders(t *testing.T) {
	s := newServer(t, "--auth-token", "s3cret")
	var mu sync.Mutex
	var seen []string // "Method key auth" for every call, in order
	record := func(ctx context.Context, method string) {
		md, _ := metadata.FromOutgoingContext(ctx)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %s %s", strings.TrimPrefix(method, "/polarway.v1.Polarway/"),
			strings.Join(md.Get("x-polarway-key"), ","), strings.Join(md.Get("authorization"), ",")))
	}
	c := dial(t, s.addr, polarway.WithAuthToken("s3cret"), polarway.WithDialOptions(
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			record(ctx, method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			record(ctx, method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	))
	ctx := ctxFor(t, time.Minute)
	rec := int64Record("x", 1)
	defer rec.Release()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Store(ctx, "hdr_a", rec)
	must(err)
	_, err = c.StoreBatch(ctx, []polarway.Dataset{{Name: "hdr_b", Data: rec}, {Name: "hdr_c", Data: rec}})
	must(err)
	tbl, err := c.Load(ctx, "hdr_a")
	must(err)
	tbl.Release()
	_, err = c.Describe(ctx, "hdr_a")
	must(err)
	tbl, err = c.Query(ctx, "SELECT x FROM hdr_b")
	must(err)
	tbl.Release()
	_, err = c.QueryInto(ctx, "SELECT x FROM hdr_b", "hdr_d")
	must(err)
	_, err = c.Delete(ctx, "hdr_d")
	must(err)

	want := []string{
		"Health  Bearer s3cret", // Dial's check
		"Store hdr_a Bearer s3cret",
		"StoreBatch hdr_b Bearer s3cret",
		"Load hdr_a Bearer s3cret",
		"Describe hdr_a Bearer s3cret",
		"Query hdr_b Bearer s3cret",
		"Query hdr_d Bearer s3cret",
		"Delete hdr_d Bearer s3cret",
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("calls sent\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}
