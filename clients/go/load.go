package polarway

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/polarway/polarway/clients/go/internal/pb"
)

// LoadOption selects what Load, LoadStream and Describe return.
type LoadOption func(*loadConfig)

type loadConfig struct {
	columns []string
	version *uint64
}

func newLoadConfig(opts []LoadOption) loadConfig {
	var lc loadConfig
	for _, o := range opts {
		o(&lc)
	}
	return lc
}

// Columns projects these columns, in this order (default: all).
func Columns(names ...string) LoadOption {
	return func(lc *loadConfig) { lc.columns = append(lc.columns, names...) }
}

// AtVersion selects a retained version (default: the latest).
func AtVersion(v uint64) LoadOption {
	return func(lc *loadConfig) { lc.version = proto.Uint64(v) }
}

// Load returns a dataset whole. Release the table when done.
func (c *Client) Load(ctx context.Context, name string, opts ...LoadOption) (arrow.Table, error) {
	rs, err := c.LoadStream(ctx, name, opts...)
	if err != nil {
		return nil, err
	}
	defer rs.Release()
	return collect(rs)
}

// LoadStream streams a dataset back as record batches, decoding each as its bytes arrive: memory
// is bounded by one batch plus the chunks in flight, whatever the dataset's size. The call is
// retried while the server is UNAVAILABLE, until the first message arrives. Release the reader
// when done (that also ends the call if it was not read to the end); check Err after Next
// returns false.
func (c *Client) LoadStream(ctx context.Context, name string, opts ...LoadOption) (*RecordStream, error) {
	lc := newLoadConfig(opts)
	req := &pb.LoadRequest{Name: name, Columns: lc.columns, Version: lc.version}
	return c.openStream(ctx, "Load", name, func(ctx context.Context) (func() (*pb.DatasetInfo, []byte, error), error) {
		s, err := c.rpc.Load(ctx, req)
		if err != nil {
			return nil, err
		}
		return func() (*pb.DatasetInfo, []byte, error) {
			m, err := s.Recv()
			return m.GetDataset(), m.GetIpc(), err
		}, nil
	})
}

// Query runs DuckDB SQL over the stored datasets (tables by name) and the server's Parquet
// directory and returns the result whole. Release the table when done.
func (c *Client) Query(ctx context.Context, sql string) (arrow.Table, error) {
	rs, err := c.QueryStream(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rs.Release()
	return collect(rs)
}

// QueryStream runs SQL and streams the result back as record batches (see LoadStream).
func (c *Client) QueryStream(ctx context.Context, sql string) (*RecordStream, error) {
	req := &pb.QueryRequest{Sql: sql}
	return c.openStream(ctx, "Query", firstTable(sql), func(ctx context.Context) (func() (*pb.DatasetInfo, []byte, error), error) {
		s, err := c.rpc.Query(ctx, req)
		if err != nil {
			return nil, err
		}
		return func() (*pb.DatasetInfo, []byte, error) {
			m, err := s.Recv()
			return nil, m.GetIpc(), err
		}, nil
	})
}

// QueryInto runs SQL and keeps the result on the server as a new version of dataset into,
// described by the result. It is not retried.
func (c *Client) QueryInto(ctx context.Context, sql, into string) (DatasetInfo, error) {
	ctx, cancel := c.callCtx(ctx, into)
	defer cancel()
	s, err := c.rpc.Query(ctx, &pb.QueryRequest{Sql: sql, Into: proto.String(into)})
	if err != nil {
		return DatasetInfo{}, wrapErr("QueryInto", err)
	}
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return DatasetInfo{}, clientErr("QueryInto", codes.Internal, "the server did not describe the stored result")
		}
		if err != nil {
			return DatasetInfo{}, wrapErr("QueryInto", err)
		}
		if m.GetStored() != nil {
			return infoFromPB(m.GetStored()), nil
		}
	}
}

// openStream starts a server-streaming call whose messages carry IPC chunks (retrying until its
// first message arrives) and decodes them as a RecordStream.
func (c *Client) openStream(ctx context.Context, op, key string, start func(context.Context) (func() (*pb.DatasetInfo, []byte, error), error)) (*RecordStream, error) {
	ctx, cancel := c.callCtx(ctx, key)
	var (
		recv  func() (*pb.DatasetInfo, []byte, error)
		info  *pb.DatasetInfo
		first []byte
	)
	err := c.retry(ctx, func() error {
		r, err := start(ctx)
		if err != nil {
			return err
		}
		d, b, err := r()
		if err == io.EOF {
			return clientErr(op, codes.Internal, "the server sent no data")
		}
		if err != nil {
			return err
		}
		recv, info, first = r, d, b
		return nil
	})
	if err != nil {
		cancel()
		return nil, wrapErr(op, err)
	}
	src := &chunkReader{op: op, buf: first, next: func() ([]byte, error) {
		_, b, err := recv()
		return b, err
	}}
	rdr, err := ipc.NewReader(src)
	if err != nil {
		cancel()
		return nil, src.cause(op, err)
	}
	rs := &RecordStream{rdr: rdr, src: src, cancel: cancel, info: infoFromPB(info)}
	rs.refs.Store(1)
	return rs, nil
}

// chunkReader is an io.Reader over the IPC chunks of a gRPC stream, pulling the next message only
// when the current one is used up.
type chunkReader struct {
	op   string
	next func() ([]byte, error)
	buf  []byte
	err  error // io.EOF at the end, or the call's error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.buf, r.err = r.next()
		if r.err != nil && r.err != io.EOF {
			r.err = wrapErr(r.op, r.err)
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// cause returns the call's error if it failed, else err (a decoding error) as a typed error.
func (r *chunkReader) cause(op string, err error) error {
	if r.err != nil && r.err != io.EOF {
		return r.err
	}
	return clientErr(op, codes.Internal, "decoding the server's Arrow IPC stream: %v", err)
}

// RecordStream is an array.RecordReader over a streamed load or query. It is not safe for
// concurrent use (like any reader); the Client is.
type RecordStream struct {
	rdr    *ipc.Reader
	src    *chunkReader
	cancel context.CancelFunc
	info   DatasetInfo
	refs   atomic.Int64
}

var _ array.RecordReader = (*RecordStream)(nil)

// Info describes the dataset version being loaded (empty for a query).
func (s *RecordStream) Info() DatasetInfo { return s.info }

func (s *RecordStream) Schema() *arrow.Schema { return s.rdr.Schema() }

// Next moves to the next batch; the previous one is released unless retained.
func (s *RecordStream) Next() bool { return s.rdr.Next() }

// RecordBatch is the current batch, valid until the next call to Next.
func (s *RecordStream) RecordBatch() arrow.RecordBatch { return s.rdr.RecordBatch() }

// Deprecated: use RecordBatch.
func (s *RecordStream) Record() arrow.RecordBatch { return s.rdr.RecordBatch() }

// Err is the error that stopped Next, as an *Error, or nil at a clean end.
func (s *RecordStream) Err() error {
	if err := s.rdr.Err(); err != nil {
		return s.src.cause(s.src.op, err)
	}
	if s.src.err != nil && s.src.err != io.EOF {
		return s.src.err
	}
	return nil
}

func (s *RecordStream) Retain() { s.refs.Add(1) }

// Release frees the reader and ends the call when the last reference goes.
func (s *RecordStream) Release() {
	if s.refs.Add(-1) == 0 {
		s.rdr.Release()
		s.cancel()
	}
}

// collect reads a stream to the end into a table.
func collect(rs *RecordStream) (arrow.Table, error) {
	var batches []arrow.RecordBatch
	defer func() {
		for _, b := range batches {
			b.Release()
		}
	}()
	for rs.Next() {
		b := rs.RecordBatch()
		b.Retain()
		batches = append(batches, b)
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	return array.NewTableFromRecords(rs.Schema(), batches), nil
}

// firstTable is a query's routing key: the first table it reads ("FROM name"), so that the
// gateway sends it where that dataset is cached; "" when it reads a function or a path.
func firstTable(sql string) string {
	fields := strings.Fields(sql)
	for i, f := range fields {
		if !strings.EqualFold(f, "from") || i+1 == len(fields) {
			continue
		}
		tok := fields[i+1]
		quoted := strings.HasPrefix(tok, `"`)
		tok = strings.TrimPrefix(tok, `"`)
		end := strings.IndexFunc(tok, func(r rune) bool {
			if quoted {
				return r == '"'
			}
			return !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_.-", r)))
		})
		if end < 0 {
			end = len(tok)
		}
		name, rest := tok[:end], strings.TrimPrefix(tok[end:], `"`)
		if name == "" || strings.HasPrefix(rest, "(") {
			return ""
		}
		return name
	}
	return ""
}
