// Package polarway is the Go client for Polarway: store Arrow tables by name on a Polarway server
// (or gateway), load them back whole or as a stream of record batches, and run DuckDB SQL over
// them.
//
//	c, err := polarway.Dial(ctx, "localhost:50052")
//	info, err := c.Store(ctx, "trades", record)
//	tbl, err := c.Load(ctx, "trades")
//	res, err := c.Query(ctx, "SELECT symbol, avg(price) FROM trades GROUP BY symbol")
//
// Every call sets the routing-key header (x-polarway-key, the dataset it is about) that the
// gateway hashes on and carries the bearer token when one is configured. Idempotent calls are
// retried with exponential backoff while the server is UNAVAILABLE. A Client is safe for
// concurrent use by many goroutines.
package polarway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/polarway/polarway/clients/go/internal/pb"
)

const (
	// MaxMessageBytes is the gRPC message size limit, the same as the server's.
	MaxMessageBytes = 16 << 20
	// ChunkBytes is the largest IPC chunk the client sends (the protocol's limit for senders).
	ChunkBytes = 1 << 20

	routingKeyHeader = "x-polarway-key"
	requestIDHeader  = "x-request-id"
)

// Option configures Dial.
type Option func(*config) error

type config struct {
	timeout  time.Duration
	token    string
	tls      *tls.Config
	insecure bool
	retries  int
	backoff  time.Duration
	lazy     bool
	dialOpts []grpc.DialOption
}

// WithTimeout sets the deadline given to calls whose context has none (default 30s; 0: none).
// It covers the whole call, including a streamed load: for long transfers pass a context with
// its own deadline.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error { c.timeout = d; return nil }
}

// WithAuthToken sends "authorization: Bearer <token>" on every call.
func WithAuthToken(token string) Option {
	return func(c *config) error { c.token = token; return nil }
}

// WithTLS connects over TLS trusting the PEM CA in caFile (empty: the system roots) and, for
// mutual TLS, presenting the PEM certificate and key in certFile and keyFile (empty: none).
func WithTLS(caFile, certFile, keyFile string) Option {
	return func(c *config) error {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("reading CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("no PEM certificate in %s", caFile)
			}
			cfg.RootCAs = pool
		}
		if certFile != "" || keyFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fmt.Errorf("reading client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		c.tls = cfg
		return nil
	}
}

// WithTLSConfig connects over TLS with this configuration.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *config) error { c.tls = cfg; return nil }
}

// WithInsecure connects in plain text (the default for "host:port" and "http://" addresses).
func WithInsecure() Option {
	return func(c *config) error { c.insecure = true; return nil }
}

// WithRetries sets how many times idempotent calls are retried on UNAVAILABLE (default 3) and
// the first delay between attempts (default 100ms), doubled each time up to 5s.
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *config) error { c.retries, c.backoff = n, backoff; return nil }
}

// WithLazy makes Dial return without contacting the server; the first call connects (and
// retries while the server comes up).
func WithLazy() Option {
	return func(c *config) error { c.lazy = true; return nil }
}

// WithDialOptions passes extra options to grpc.NewClient (interceptors, a custom dialer, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) error { c.dialOpts = append(c.dialOpts, opts...); return nil }
}

// Client is a connection to a Polarway server or gateway. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	rpc  pb.PolarwayClient
	cfg  config
}

// Dial connects to addr: "host:port" or "http://host:port" (plain text), or "https://host:port"
// (TLS with the system roots unless WithTLS is given). Unless WithLazy is given it checks the
// server with Health (retrying while it is UNAVAILABLE) and fails if it cannot be reached.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	cfg := config{timeout: 30 * time.Second, retries: 3, backoff: 100 * time.Millisecond}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, clientErr("Dial", codes.InvalidArgument, "%v", err)
		}
	}
	target := addr
	switch {
	case strings.HasPrefix(addr, "https://"):
		target = strings.TrimPrefix(addr, "https://")
		if cfg.tls == nil && !cfg.insecure {
			cfg.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	case strings.HasPrefix(addr, "http://"):
		target = strings.TrimPrefix(addr, "http://")
	}
	target = strings.TrimSuffix(target, "/")

	creds := insecure.NewCredentials()
	if cfg.tls != nil && !cfg.insecure {
		creds = credentials.NewTLS(cfg.tls)
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes),
		),
		// Large windows keep a stream of 1 MiB chunks flowing without waiting for window updates.
		grpc.WithInitialWindowSize(8 << 20),
		grpc.WithInitialConnWindowSize(32 << 20),
		// Reconnect quickly after the server comes back, so retries are not stuck behind
		// gRPC's default reconnect backoff (up to 2 minutes).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 10 * time.Second,
		}),
	}
	dialOpts = append(dialOpts, cfg.dialOpts...)
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, clientErr("Dial", codes.InvalidArgument, "%v", err)
	}
	c := &Client{conn: conn, rpc: pb.NewPolarwayClient(conn), cfg: cfg}
	if !cfg.lazy {
		if _, err := c.Health(ctx); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close closes the connection; calls in flight fail with ErrCanceled.
func (c *Client) Close() error { return c.conn.Close() }

// WithRequestID returns a context whose calls carry "x-request-id: id" (logged by the server and
// the gateway).
func WithRequestID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, requestIDHeader, id)
}

// callCtx adds the default deadline and the call's headers: the routing key (when known) and the
// token.
func (c *Client) callCtx(ctx context.Context, key string) (context.Context, context.CancelFunc) {
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok && c.cfg.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.cfg.timeout)
	}
	var kv []string
	if key != "" {
		kv = append(kv, routingKeyHeader, key)
	}
	if c.cfg.token != "" {
		kv = append(kv, "authorization", "Bearer "+c.cfg.token)
	}
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	return ctx, cancel
}

// retry runs an idempotent call until it succeeds, fails with something other than
// UNAVAILABLE, runs out of attempts, or ctx ends.
func (c *Client) retry(ctx context.Context, call func() error) error {
	delay := c.cfg.backoff
	for attempt := 0; ; attempt++ {
		err := call()
		if err == nil || !isRetryable(err) || attempt >= c.cfg.retries {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(delay*2, 5*time.Second)
	}
}
