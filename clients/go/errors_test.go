package polarway_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	polarway "github.com/polarway/polarway/clients/go"
	"github.com/polarway/polarway/clients/go/internal/pb"
	"github.com/polarway/polarway/clients/go/internal/testdata"
)

// requireErr checks that err is a *polarway.Error matching sentinel, with the code and a
// message, and (when want is given) that the message mentions it.
func requireErr(t *testing.T, what string, err, sentinel error, code codes.Code, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, sentinel)
	}
	var pe *polarway.Error
	if !errors.As(err, &pe) {
		t.Fatalf("%s: %T %v is not a *polarway.Error", what, err, err)
	}
	if !errors.Is(err, sentinel) || pe.Code != code || status.Code(err) != code || pe.Message == "" {
		t.Fatalf("%s: got %v (code %v), want %v", what, err, pe.Code, sentinel)
	}
	if want != "" && !strings.Contains(strings.ToLower(pe.Message), strings.ToLower(want)) {
		t.Fatalf("%s: message %q does not mention %q", what, pe.Message, want)
	}
	t.Logf("%s -> %v", what, err)
}

func TestErrorsMapped(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	c := dial(t, shared.addr)
	rec := int64Record("x", 1)
	defer rec.Release()
	if _, err := c.Store(ctx, "go_err_exists", rec); err != nil {
		t.Fatal(err)
	}

	_, err := c.Store(ctx, "../etc/passwd", rec)
	requireErr(t, "store with a path name", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "name")
	_, err = c.Store(ctx, ".hidden", rec)
	requireErr(t, "store with a leading dot", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "")
	_, err = c.Store(ctx, strings.Repeat("n", 256), rec)
	requireErr(t, "store with a 256-char name", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "")
	_, err = c.Load(ctx, "bad/name")
	requireErr(t, "load with a bad name", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "")

	_, err = c.Load(ctx, "go_err_missing")
	requireErr(t, "load unknown", err, polarway.ErrNotFound, codes.NotFound, "go_err_missing")
	_, err = c.Describe(ctx, "go_err_missing")
	requireErr(t, "describe unknown", err, polarway.ErrNotFound, codes.NotFound, "")
	_, err = c.Delete(ctx, "go_err_missing")
	requireErr(t, "delete unknown", err, polarway.ErrNotFound, codes.NotFound, "")
	_, err = c.Load(ctx, "go_err_exists", polarway.AtVersion(7))
	requireErr(t, "load unknown version", err, polarway.ErrNotFound, codes.NotFound, "")
	_, err = c.Load(ctx, "go_err_exists", polarway.Columns("nope"))
	requireErr(t, "load an unknown column", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "nope")

	_, err = c.Store(ctx, "go_err_exists", rec, polarway.IfAbsent())
	requireErr(t, "if absent", err, polarway.ErrAlreadyExists, codes.AlreadyExists, "")
	_, err = c.Store(ctx, "go_err_exists", rec, polarway.IfVersion(5))
	requireErr(t, "if version", err, polarway.ErrAborted, codes.Aborted, "")
	if info, err := c.Store(ctx, "go_err_fresh", rec, polarway.IfAbsent()); err != nil || info.Version != 1 {
		t.Fatalf("if absent on a new name: %+v %v", info, err)
	}

	_, err = c.Query(ctx, "SELEC nonsense")
	requireErr(t, "bad SQL", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "")
	_, err = c.Query(ctx, "SELECT * FROM go_err_no_such_table")
	requireErr(t, "query an unknown table", err, polarway.ErrNotFound, codes.NotFound, "go_err_no_such_table")
	for _, sql := range []string{
		"COPY (SELECT 1) TO '/tmp/go_err_copy.csv'",
		"SELECT * FROM read_csv('/etc/passwd')",
		"ATTACH '/tmp/go_err.duckdb' AS x",
		"INSTALL httpfs",
		"SET enable_external_access = true",
	} {
		_, err = c.Query(ctx, sql)
		requireErr(t, sql, err, polarway.ErrPermissionDenied, codes.PermissionDenied, "")
	}
	_, err = c.QueryInto(ctx, "SELECT 1 AS one", "bad name!")
	requireErr(t, "query into a bad name", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "")

	_, err = c.StoreBatch(ctx, nil)
	requireErr(t, "empty store batch", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "")

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.List(canceled, "")
	requireErr(t, "canceled context", err, polarway.ErrCanceled, codes.Canceled, "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v does not match context.Canceled", err)
	}
}

// Malformed uploads, sent on a raw stream because the client never sends them; the statuses go
// through the client's mapping.
func TestRawUploadErrors(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	conn, err := grpc.NewClient(shared.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := pb.NewPolarwayClient(conn)
	upload := func(name string, chunks ...[]byte) error {
		ctx := metadata.AppendToOutgoingContext(ctx, "x-polarway-key", name)
		s, err := raw.Store(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&pb.StoreRequest{Msg: &pb.StoreRequest_Header{Header: &pb.StoreHeader{Name: name}}}); err != nil {
			return err
		}
		for _, ch := range chunks {
			if err := s.Send(&pb.StoreRequest{Msg: &pb.StoreRequest_Ipc{Ipc: ch}}); err != nil {
				break
			}
		}
		_, err = s.CloseAndRecv()
		return err
	}
	err = polarway.WrapErr("Store", upload("go_raw_garbage", []byte("this is not arrow at all, not even close")))
	requireErr(t, "garbage IPC", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "")

	// A valid stream cut short.
	var full []byte
	rec := testdata.WideRecord(memory.DefaultAllocator)
	defer rec.Release()
	full = encodeIPC(t, rec)
	err = polarway.WrapErr("Store", upload("go_raw_truncated", full[:len(full)/2]))
	requireErr(t, "truncated IPC", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "")

	err = polarway.WrapErr("Store", upload("go_raw_big_chunk", make([]byte, 5<<20)))
	requireErr(t, "5 MiB chunk", err, polarway.ErrResourceExhausted, codes.ResourceExhausted, "")

	// Nothing was committed by the failed uploads.
	c := dial(t, shared.addr)
	for _, n := range []string{"go_raw_garbage", "go_raw_truncated", "go_raw_big_chunk"} {
		if _, err := c.Describe(ctx, n); !errors.Is(err, polarway.ErrNotFound) {
			t.Errorf("%s after a failed upload: %v", n, err)
		}
	}
}

func TestUploadLimitAndDeadlines(t *testing.T) {
	s := newServer(t, "--max-upload-bytes", "100000", "--query-timeout", "1")
	ctx := ctxFor(t, time.Minute)
	c := dial(t, s.addr)
	vals := make([]int64, 100000)
	rec := int64Record("x", vals...)
	defer rec.Release()
	_, err := c.Store(ctx, "go_too_big", rec)
	requireErr(t, "upload over --max-upload-bytes", err, polarway.ErrResourceExhausted, codes.ResourceExhausted, "")

	slow := "SELECT count(*) FROM range(100000000000) a"
	_, err = c.Query(ctx, slow)
	requireErr(t, "query over --query-timeout", err, polarway.ErrDeadlineExceeded, codes.DeadlineExceeded, "")

	// The client's own deadline.
	short := dial(t, s.addr, polarway.WithTimeout(200*time.Millisecond))
	start := time.Now()
	_, err = short.Query(ctx, slow) // ctx has a deadline; the client's applies only without one
	requireErr(t, "query with the caller's deadline", err, polarway.ErrDeadlineExceeded, codes.DeadlineExceeded, "")
	_, err = short.Query(context.Background(), slow)
	requireErr(t, "query over WithTimeout", err, polarway.ErrDeadlineExceeded, codes.DeadlineExceeded, "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v does not match context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("deadlines took %v", d)
	}
}

func TestUnavailable(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start := time.Now()
	_, err := polarway.Dial(ctxFor(t, time.Minute), addr, polarway.WithRetries(2, 10*time.Millisecond))
	requireErr(t, "dial a closed port", err, polarway.ErrUnavailable, codes.Unavailable, "")
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("gave up after %v", d)
	}
}
