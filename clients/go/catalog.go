package polarway

import (
	"context"
	"time"

	"github.com/polarway/polarway/clients/go/internal/pb"
)

// DatasetInfo describes one version of a dataset.
type DatasetInfo struct {
	Name    string
	Version uint64
	Rows    uint64
	// Bytes is the size of the stored Parquet (zstd) object.
	Bytes uint64
	// Created is the commit time.
	Created time.Time
	// Columns is the schema; List leaves it empty, Describe fills it.
	Columns []Column
}

// Column is one column of a stored dataset.
type Column struct {
	Name string
	// DataType is the server's (arrow-rs) spelling, e.g. "Int64", "Utf8",
	// `Timestamp(Microsecond, Some("UTC"))`.
	DataType string
	Nullable bool
}

// CacheStats are the worker's read-through cache counters.
type CacheStats struct {
	Hits, Misses uint64
	// HitRate is Hits / (Hits + Misses), 0 when there were no lookups.
	HitRate float64
	// Bytes held now, and the bound (--cache-size).
	Bytes, Capacity    uint64
	Entries, Evictions uint64
	// Workers on the s3 store: the local disk cache of S3 objects (the second tier)...
	DiskHits, DiskMisses, DiskBytes, DiskCapacity uint64
	// ...and the traffic with the handle store since the worker started: requests and bytes
	// moved (S3 requests on s3, file operations on external, 0 on memory).
	StoreRequests, StoreBytesRead, StoreBytesWritten uint64
}

// HealthStatus is the server's answer to Health.
type HealthStatus struct {
	// Status is "OK" when the server can serve.
	Status string
	// Version is the server's version.
	Version string
	// HandleStore is "memory", "external" or "s3".
	HandleStore string
}

func infoFromPB(d *pb.DatasetInfo) DatasetInfo {
	if d == nil {
		return DatasetInfo{}
	}
	info := DatasetInfo{
		Name:    d.GetName(),
		Version: d.GetVersion(),
		Rows:    d.GetRows(),
		Bytes:   d.GetBytes(),
		Created: time.UnixMilli(d.GetCreatedUnixMs()),
	}
	for _, col := range d.GetColumns() {
		info.Columns = append(info.Columns, Column{Name: col.GetName(), DataType: col.GetDataType(), Nullable: col.GetNullable()})
	}
	return info
}

// Health asks the server for its status. It needs no token.
func (c *Client) Health(ctx context.Context) (HealthStatus, error) {
	ctx, cancel := c.callCtx(ctx, "")
	defer cancel()
	var out HealthStatus
	err := c.retry(ctx, func() error {
		r, err := c.rpc.Health(ctx, &pb.HealthRequest{})
		if err == nil {
			out = HealthStatus{Status: r.GetStatus(), Version: r.GetVersion(), HandleStore: r.GetHandleStore()}
		}
		return err
	})
	return out, wrapErr("Health", err)
}

// List describes the latest version of every dataset whose name starts with prefix ("" for
// all), sorted by name, without their columns.
func (c *Client) List(ctx context.Context, prefix string) ([]DatasetInfo, error) {
	ctx, cancel := c.callCtx(ctx, "")
	defer cancel()
	var out []DatasetInfo
	err := c.retry(ctx, func() error {
		r, err := c.rpc.List(ctx, &pb.ListRequest{Prefix: prefix})
		if err != nil {
			return err
		}
		out = out[:0]
		for _, d := range r.GetDatasets() {
			out = append(out, infoFromPB(d))
		}
		return nil
	})
	return out, wrapErr("List", err)
}

// Describe returns the version, rows, bytes, schema and creation time of the latest version of
// name, or of the version given with AtVersion.
func (c *Client) Describe(ctx context.Context, name string, opts ...LoadOption) (DatasetInfo, error) {
	lc := newLoadConfig(opts)
	ctx, cancel := c.callCtx(ctx, name)
	defer cancel()
	var out DatasetInfo
	err := c.retry(ctx, func() error {
		r, err := c.rpc.Describe(ctx, &pb.DescribeRequest{Name: name, Version: lc.version})
		out = infoFromPB(r)
		return err
	})
	return out, wrapErr("Describe", err)
}

// Delete deletes name and returns the version that was current. It is not retried.
func (c *Client) Delete(ctx context.Context, name string) (uint64, error) {
	ctx, cancel := c.callCtx(ctx, name)
	defer cancel()
	r, err := c.rpc.Delete(ctx, &pb.DeleteRequest{Name: name})
	if err != nil {
		return 0, wrapErr("Delete", err)
	}
	return r.GetVersion(), nil
}

// CacheStats returns the server's read-through cache counters.
func (c *Client) CacheStats(ctx context.Context) (CacheStats, error) {
	ctx, cancel := c.callCtx(ctx, "")
	defer cancel()
	var out CacheStats
	err := c.retry(ctx, func() error {
		r, err := c.rpc.CacheStats(ctx, &pb.CacheStatsRequest{})
		if err == nil {
			out = CacheStats{
				Hits: r.GetHits(), Misses: r.GetMisses(), HitRate: r.GetHitRate(),
				Bytes: r.GetBytes(), Capacity: r.GetCapacity(),
				Entries: r.GetEntries(), Evictions: r.GetEvictions(),
				DiskHits: r.GetDiskHits(), DiskMisses: r.GetDiskMisses(),
				DiskBytes: r.GetDiskBytes(), DiskCapacity: r.GetDiskCapacity(),
				StoreRequests: r.GetStoreRequests(), StoreBytesRead: r.GetStoreBytesRead(),
				StoreBytesWritten: r.GetStoreBytesWritten(),
			}
		}
		return err
	})
	return out, wrapErr("CacheStats", err)
}
