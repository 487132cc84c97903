package polarway_test

// The test harness: every test talks to the real `polarway` binary (POLARWAY_BIN, default
// $CARGO_TARGET_DIR/release/polarway: the release build that scripts/run-server.sh and
// scripts/test.sh share, `cargo build --release --workspace`) over 127.0.0.1.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	polarway "github.com/polarway/polarway/clients/go"
)

// shared is the plain-text server most tests use (started by TestMain).
var shared *server

func TestMain(m *testing.M) {
	var err error
	shared, err = startServer(0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the shared server:", err)
		os.Exit(1)
	}
	code := m.Run()
	shared.stop()
	os.Exit(code)
}

func serverBin() string {
	if b := os.Getenv("POLARWAY_BIN"); b != "" {
		return b
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		home, _ := os.UserHomeDir()
		target = filepath.Join(home, ".cache", "polarway", "target")
	}
	return filepath.Join(target, "release", "polarway")
}

type server struct {
	addr string
	dir  string
	cmd  *exec.Cmd
}

// startServer runs `polarway server` on port (0: a free one) with extra flags and waits (at most
// 60 s) for its "listening on" line.
func startServer(port int, extra ...string) (*server, error) {
	dir, err := os.MkdirTemp("", "polarway-go-test-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"server", "--grpc-port", strconv.Itoa(port), "--data-dir", filepath.Join(dir, "data")}, extra...)
	cmd := exec.Command(serverBin(), args...)
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so stop can kill anything it spawned
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s (cargo build --release --workspace, or set POLARWAY_BIN): %w", serverBin(), err)
	}
	s := &server{dir: dir, cmd: cmd}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "polarway: listening on "); ok {
				addrCh <- strings.TrimSpace(a)
				break
			}
		}
		close(addrCh)
		for sc.Scan() { // keep draining so the server never blocks on stdout
		}
	}()
	select {
	case a, ok := <-addrCh:
		if !ok {
			s.stop()
			return nil, fmt.Errorf("the server exited before listening")
		}
		s.addr = a
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, fmt.Errorf("the server did not print its address within 60 s")
	}
	return s, nil
}

func (s *server) stop() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	s.cmd.Wait()
	os.RemoveAll(s.dir)
}

// newServer starts a server for one test, stopped at its end.
func newServer(t testing.TB, extra ...string) *server {
	t.Helper()
	s, err := startServer(0, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// ctxFor is a context bounded well under the suite's timeout.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dial connects to s, closing the client at the test's end.
func dial(t testing.TB, addr string, opts ...polarway.Option) *polarway.Client {
	t.Helper()
	c, err := polarway.Dial(ctxFor(t, 30*time.Second), addr, opts...)
	if err != nil {
		t.Fatalf("Dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// certs is a CA with a server certificate (SANs 127.0.0.1 and localhost) and a client
// certificate, as PEM files in a temp dir.
type certs struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func makeCerts(t testing.TB) certs {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "polarway test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, server bool) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return write(cn+".pem", "CERTIFICATE", der), write(cn+".key", "PRIVATE KEY", keyDER(k))
	}
	c := certs{ca: write("ca.pem", "CERTIFICATE", caDER)}
	c.serverCert, c.serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth, true)
	c.clientCert, c.clientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth, false)
	return c
}
