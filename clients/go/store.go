package polarway

import (
	"context"
	"errors"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/polarway/polarway/clients/go/internal/pb"
)

// StoreOption sets a precondition on a store.
type StoreOption func(*pb.StoreHeader)

// IfAbsent stores only if the dataset does not exist; otherwise the call fails with
// ErrAlreadyExists.
func IfAbsent() StoreOption {
	return func(h *pb.StoreHeader) {
		h.Condition = &pb.Condition{Kind: &pb.Condition_IfAbsent{IfAbsent: true}}
	}
}

// IfVersion stores only if the dataset's current version is v; otherwise the call fails with
// ErrAborted.
func IfVersion(v uint64) StoreOption {
	return func(h *pb.StoreHeader) {
		h.Condition = &pb.Condition{Kind: &pb.Condition_IfVersion{IfVersion: v}}
	}
}

// Dataset is one entry of a StoreBatch.
type Dataset struct {
	Name string
	// Data is what Store accepts: an arrow.RecordBatch, []arrow.RecordBatch, arrow.Table or
	// array.RecordReader.
	Data    any
	Options []StoreOption
}

// Store uploads data as the next version of name and describes the version it created. data is
// an arrow.RecordBatch (arrow.Record), a []arrow.RecordBatch, an arrow.Table or an
// array.RecordReader; a reader is consumed batch by batch, so client memory stays bounded by one
// batch plus one chunk whatever the dataset's size. Stores are not retried (they are not
// idempotent).
func (c *Client) Store(ctx context.Context, name string, data any, opts ...StoreOption) (DatasetInfo, error) {
	infos, err := c.upload(ctx, "Store", []Dataset{{Name: name, Data: data, Options: opts}}, false)
	if err != nil {
		return DatasetInfo{}, err
	}
	return infos[0], nil
}

// StoreBatch uploads several datasets in one call, in order: all are committed or none is. The
// result describes them in the same order.
func (c *Client) StoreBatch(ctx context.Context, datasets []Dataset) ([]DatasetInfo, error) {
	if len(datasets) == 0 {
		return nil, clientErr("StoreBatch", codes.InvalidArgument, "no datasets to store")
	}
	return c.upload(ctx, "StoreBatch", datasets, true)
}

// uploadStream is what Store and StoreBatch have in common.
type uploadStream interface {
	Send(*pb.StoreRequest) error
	CloseSend() error
}

func (c *Client) upload(ctx context.Context, op string, datasets []Dataset, batch bool) ([]DatasetInfo, error) {
	readers := make([]array.RecordReader, 0, len(datasets))
	defer func() {
		for _, r := range readers {
			r.Release()
		}
	}()
	for _, d := range datasets {
		r, err := asReader(d.Data)
		if err != nil {
			return nil, clientErr(op, codes.InvalidArgument, "dataset %q: %v", d.Name, err)
		}
		readers = append(readers, r)
	}

	ctx, cancel := c.callCtx(ctx, datasets[0].Name)
	defer cancel()
	var (
		stream  uploadStream
		recv    func() ([]*pb.DatasetInfo, error)
		openErr error
	)
	if batch {
		s, err := c.rpc.StoreBatch(ctx)
		stream, openErr = s, err
		recv = func() ([]*pb.DatasetInfo, error) {
			r, err := s.CloseAndRecv()
			return r.GetDatasets(), err
		}
	} else {
		s, err := c.rpc.Store(ctx)
		stream, openErr = s, err
		recv = func() ([]*pb.DatasetInfo, error) {
			r, err := s.CloseAndRecv()
			return []*pb.DatasetInfo{r.GetDataset()}, err
		}
	}
	if openErr != nil {
		return nil, wrapErr(op, openErr)
	}

	for i, d := range datasets {
		header := &pb.StoreHeader{Name: d.Name}
		for _, o := range d.Options {
			o(header)
		}
		err := sendDataset(stream, header, readers[i])
		if errors.Is(err, io.EOF) {
			break // the server ended the call early; its status says why
		}
		if err != nil {
			// Abort the call so that the server never commits a partial upload.
			cancel()
			if _, ok := status.FromError(err); ok {
				return nil, wrapErr(op, err)
			}
			return nil, clientErr(op, codes.InvalidArgument, "dataset %q: encoding Arrow IPC: %v", d.Name, err)
		}
	}
	infos, err := recv()
	if err != nil {
		return nil, wrapErr(op, err)
	}
	out := make([]DatasetInfo, len(infos))
	for i, d := range infos {
		out[i] = infoFromPB(d)
	}
	return out, nil
}

// sendDataset sends the header, then rdr as one Arrow IPC stream in chunks of at most ChunkBytes,
// sent as they fill. It returns io.EOF if the server ended the call.
func sendDataset(stream uploadStream, header *pb.StoreHeader, rdr array.RecordReader) error {
	if err := stream.Send(&pb.StoreRequest{Msg: &pb.StoreRequest_Header{Header: header}}); err != nil {
		return err
	}
	w := &chunkWriter{send: func(b []byte) error {
		return stream.Send(&pb.StoreRequest{Msg: &pb.StoreRequest_Ipc{Ipc: b}})
	}}
	enc := ipc.NewWriter(w, ipc.WithSchema(rdr.Schema()))
	for rdr.Next() {
		if err := enc.Write(rdr.RecordBatch()); err != nil {
			enc.Close()
			return w.cause(err)
		}
	}
	if err := rdr.Err(); err != nil {
		enc.Close()
		return err
	}
	if err := enc.Close(); err != nil {
		return w.cause(err)
	}
	return w.flush()
}

// chunkWriter cuts what is written into chunks of ChunkBytes and sends each as soon as it is
// full. gRPC may keep a sent message, so every chunk is a fresh buffer.
type chunkWriter struct {
	send    func([]byte) error
	buf     []byte
	sendErr error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, ChunkBytes)
		}
		k := min(len(p), ChunkBytes-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == ChunkBytes {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if w.sendErr != nil {
		return w.sendErr
	}
	if len(w.buf) > 0 {
		w.sendErr = w.send(w.buf)
		w.buf = nil
	}
	return w.sendErr
}

// cause prefers the send error (the call ended) over the encoder's wrapping of it.
func (w *chunkWriter) cause(err error) error {
	if w.sendErr != nil {
		return w.sendErr
	}
	return err
}

// asReader turns what Store accepts into a RecordReader the caller releases.
func asReader(data any) (array.RecordReader, error) {
	switch d := data.(type) {
	case array.RecordReader:
		d.Retain()
		return d, nil
	case arrow.RecordBatch:
		return array.NewRecordReader(d.Schema(), []arrow.RecordBatch{d})
	case []arrow.RecordBatch:
		if len(d) == 0 {
			return nil, errors.New("no record batches (the schema is unknown); store an empty batch instead")
		}
		return array.NewRecordReader(d[0].Schema(), d)
	case arrow.Table:
		return array.NewTableReader(d, 0), nil
	case nil:
		return nil, errors.New("no data")
	default:
		return nil, errors.New("unsupported data type: want arrow.RecordBatch, []arrow.RecordBatch, arrow.Table or array.RecordReader")
	}
}
