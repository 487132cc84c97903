package polarway_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	polarway "github.com/polarway/polarway/clients/go"
)

// roundTrip stores and loads a small dataset through c.
func roundTrip(t *testing.T, c *polarway.Client, name string) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	rec := int64Record("x", 1, 2, 3)
	defer rec.Release()
	if _, err := c.Store(ctx, name, rec); err != nil {
		t.Fatal(err)
	}
	got, err := c.Load(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	want := tableOf(rec)
	defer want.Release()
	requireEqual(t, want, got)
}

func TestTLS(t *testing.T) {
	cs := makeCerts(t)
	s := newServer(t, "--tls-cert", cs.serverCert, "--tls-key", cs.serverKey)
	port := s.addr[strings.LastIndex(s.addr, ":")+1:]

	c := dial(t, s.addr, polarway.WithTLS(cs.ca, "", ""))
	roundTrip(t, c, "go_tls")
	// By host name (the certificate's other SAN), with the https:// form.
	c2 := dial(t, "https://localhost:"+port, polarway.WithTLS(cs.ca, "", ""))
	roundTrip(t, c2, "go_tls_localhost")

	ctx := ctxFor(t, time.Minute)
	noRetry := polarway.WithRetries(0, 0)
	// Plain text to a TLS server, and TLS trusting only the system roots, both fail.
	_, err := polarway.Dial(ctx, s.addr, noRetry)
	requireErr(t, "plain text to a TLS server", err, polarway.ErrUnavailable, codes.Unavailable, "")
	_, err = polarway.Dial(ctx, "https://"+s.addr, noRetry)
	requireErr(t, "TLS without the CA", err, polarway.ErrUnavailable, codes.Unavailable, "certificate")
}

func TestMutualTLS(t *testing.T) {
	cs := makeCerts(t)
	s := newServer(t, "--tls-cert", cs.serverCert, "--tls-key", cs.serverKey, "--tls-ca", cs.ca)

	c := dial(t, s.addr, polarway.WithTLS(cs.ca, cs.clientCert, cs.clientKey))
	roundTrip(t, c, "go_mtls")

	// The same through a *tls.Config.
	pem, err := os.ReadFile(cs.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(cs.clientCert, cs.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	c2 := dial(t, s.addr, polarway.WithTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}))
	roundTrip(t, c2, "go_mtls_config")

	// Without a client certificate the server refuses the connection (TLS 1.3 reports it after
	// the handshake, so it may surface as UNAVAILABLE on the first call).
	ctx := ctxFor(t, time.Minute)
	_, err = polarway.Dial(ctx, s.addr, polarway.WithTLS(cs.ca, "", ""), polarway.WithRetries(0, 0))
	requireErr(t, "mTLS without a client certificate", err, polarway.ErrUnavailable, codes.Unavailable, "")

	// A certificate from another CA is refused too.
	other := makeCerts(t)
	_, err = polarway.Dial(ctx, s.addr, polarway.WithTLS(cs.ca, other.clientCert, other.clientKey), polarway.WithRetries(0, 0))
	requireErr(t, "mTLS with a foreign certificate", err, polarway.ErrUnavailable, codes.Unavailable, "")

	// A bad option is an error at Dial.
	_, err = polarway.Dial(ctx, s.addr, polarway.WithTLS("/nonexistent/ca.pem", "", ""))
	requireErr(t, "missing CA file", err, polarway.ErrInvalidArgument, codes.InvalidArgument, "ca.pem")
}

func TestAuthToken(t *testing.T) {
	s := newServer(t, "--auth-token", "t0ken")
	ctx := ctxFor(t, time.Minute)

	good := dial(t, s.addr, polarway.WithAuthToken("t0ken"))
	roundTrip(t, good, "go_auth")

	// Health needs no token, so Dial succeeds; every other call is refused.
	for name, c := range map[string]*polarway.Client{
		"no token":    dial(t, s.addr),
		"wrong token": dial(t, s.addr, polarway.WithAuthToken("guess")),
	} {
		_, err := c.List(ctx, "")
		requireErr(t, name+": list", err, polarway.ErrUnauthenticated, codes.Unauthenticated, "")
		_, err = c.Load(ctx, "go_auth")
		requireErr(t, name+": load", err, polarway.ErrUnauthenticated, codes.Unauthenticated, "")
		rec := int64Record("x", 1)
		_, err = c.Store(ctx, "go_auth_intruder", rec)
		rec.Release()
		requireErr(t, name+": store", err, polarway.ErrUnauthenticated, codes.Unauthenticated, "")
		_, err = c.Query(ctx, "SELECT * FROM go_auth")
		requireErr(t, name+": query", err, polarway.ErrUnauthenticated, codes.Unauthenticated, "")
	}
	if _, err := good.Describe(ctx, "go_auth_intruder"); !errors.Is(err, polarway.ErrNotFound) {
		t.Fatalf("the refused store left something: %v", err)
	}
}

// A call started before the server is up succeeds once it comes up, through the retries.
func TestRetryUntilServerIsUp(t *testing.T) {
	port := freePort(t)
	c := dial(t, fmt.Sprintf("127.0.0.1:%d", port), polarway.WithLazy(), polarway.WithRetries(40, 50*time.Millisecond))
	type result struct {
		list []polarway.DatasetInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		l, err := c.List(ctxFor(t, 2*time.Minute), "")
		done <- result{l, err}
	}()
	time.Sleep(500 * time.Millisecond) // let a few attempts fail
	select {
	case r := <-done:
		t.Fatalf("the call ended before any server existed: %+v", r)
	default:
	}
	s, err := startServer(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	select {
	case r := <-done:
		if r.err != nil || len(r.list) != 0 {
			t.Fatalf("list after the server came up: %+v %v", r.list, r.err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the call did not finish")
	}
	roundTrip(t, c, "go_late")
}
