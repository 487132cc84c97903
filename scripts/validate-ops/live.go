package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const token = "validate-ops-token"

type proc struct {
	cmd  *exec.Cmd
	addr map[string]string // "listening" / "metrics" -> address printed on stdout
}

// start runs bin and waits (bounded) for its "listening on" line, then briefly for "metrics on".
func start(bin string, env []string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), append([]string{"RUST_LOG=warn"}, env...)...)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, addr: map[string]string{}}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	re := regexp.MustCompile(`: (listening|metrics) on (\S+)`)
	deadline := time.After(30 * time.Second)
	var grace <-chan time.Time
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				p.stop()
				return nil, fmt.Errorf("%s exited before listening: %s", bin, tail(stderr.String()))
			}
			if m := re.FindStringSubmatch(l); m != nil {
				p.addr[m[1]] = m[2]
				if m[1] == "listening" {
					grace = time.After(3 * time.Second)
				}
			}
			if p.addr["listening"] != "" && p.addr["metrics"] != "" {
				return p, nil
			}
		case <-grace:
			return p, nil // no metrics line: reported by the metrics checks
		case <-deadline:
			p.stop()
			return nil, fmt.Errorf("%s: no listening line within 30 s: %s", bin, tail(stderr.String()))
		}
	}
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
}

type liveResult struct {
	worker, gateway         *proc
	workerBin, gatewayBin   string
	workerHelp, gatewayHelp string
	workerHealthHelp        string
	gatewayHealthHelp       string
	workerMetrics           map[string]bool
	gatewayMetrics          map[string]bool
	dataDir                 string
}

func (l *liveResult) stop() {
	l.gateway.stop()
	l.worker.stop()
	if l.dataDir != "" {
		os.RemoveAll(l.dataDir)
	}
}

func help(bin string, args ...string) string {
	out, _ := exec.Command(bin, append(args, "--help")...).CombinedOutput()
	return string(out)
}

func runLive(workerBin, gatewayBin string) (*liveResult, error) {
	for _, b := range []string{workerBin, gatewayBin} {
		if st, err := os.Stat(b); err != nil || st.IsDir() {
			return nil, fmt.Errorf("binary %q not found (-worker, -gateway)", b)
		}
	}
	l := &liveResult{workerBin: workerBin, gatewayBin: gatewayBin}
	l.workerHelp = help(workerBin, "server")
	l.gatewayHelp = help(gatewayBin)
	l.workerHealthHelp = help(workerBin, "health")
	l.gatewayHealthHelp = help(gatewayBin, "health")
	var err error
	if l.dataDir, err = os.MkdirTemp("", "validate-ops-"); err != nil {
		return nil, err
	}
	// Metrics through the environment, as the compose file and the manifests set them.
	l.worker, err = start(workerBin, []string{"POLARWAY_METRICS_ENABLED=true", "POLARWAY_METRICS_PORT=0"},
		"server", "--grpc-port", "0", "--data-dir", l.dataDir+"/data", "--handle-store", "memory")
	if err != nil {
		return l, err
	}
	// The gateway with the policy the compose file and the manifests use.
	l.gateway, err = start(gatewayBin, []string{"POLARWAY_AUTH_TOKEN=" + token, "POLARWAY_METRICS_PORT=0"},
		"--listen", "127.0.0.1:0", "--backend", "http://"+l.worker.addr["listening"], "--policy", "policies/default.toml",
		"--health-interval", "0.5")
	if err != nil {
		return l, err
	}
	var e errs
	if err := workload(l.worker.addr["listening"], l.gateway.addr["listening"]); err != nil {
		e.add("workload: %v", err)
	}
	// Health subcommands (the Docker HEALTHCHECKs): exit 0 on a serving server, non-zero on a closed port.
	for _, h := range []struct{ bin, addr, help string }{
		{workerBin, l.worker.addr["listening"], l.workerHealthHelp},
		{gatewayBin, l.gateway.addr["listening"], l.gatewayHealthHelp},
	} {
		if !strings.Contains(h.help, "--addr") {
			e.add("%s has no `health --addr` subcommand yet (metrics.md)", h.bin)
			continue
		}
		if out, err := exec.Command(h.bin, "health", "--addr", h.addr).CombinedOutput(); err != nil {
			e.add("%s health --addr %s: %v %s", h.bin, h.addr, err, out)
		}
		if err := exec.Command(h.bin, "health", "--addr", "127.0.0.1:1", "--timeout", "2").Run(); err == nil {
			e.add("%s health on a closed port exited 0", h.bin)
		}
	}
	if a := l.worker.addr["metrics"]; a != "" {
		l.workerMetrics, err = scrape(a)
		if err != nil {
			e.add("worker: %v", err)
		}
	}
	if a := l.gateway.addr["metrics"]; a != "" {
		l.gatewayMetrics, err = scrape(a)
		if err != nil {
			e.add("gateway: %v", err)
		}
	}
	return l, e.err()
}

// scrape returns the metric names of a /metrics page: sample names and the names of # TYPE lines.
func scrape(addr string) (map[string]bool, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %v %s", err, resp.Status)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && f[0] == "#" && f[1] == "TYPE":
			names[f[2]] = true
			switch f[3] {
			case "counter":
				names[strings.TrimSuffix(f[2], "_total")+"_total"] = true
			case "histogram":
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f[2]+s] = true
				}
			}
		case len(f) >= 2 && !strings.HasPrefix(line, "#"):
			names[strings.SplitN(f[0], "{", 2)[0]] = true
		}
	}
	return names, nil
}

// A pass-through codec: the workload hand-encodes its few protobuf messages (protowire), so the
// validator needs no generated stubs.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func str(num protowire.Number, s string) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func bytesField(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// field returns the bytes of field num in msg (nil when absent).
func field(msg []byte, num protowire.Number) []byte {
	for len(msg) > 0 {
		n, t, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return nil
		}
		msg = msg[l:]
		if t == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if n == num {
				return v
			}
			msg = msg[l:]
		} else {
			l := protowire.ConsumeFieldValue(n, t, msg)
			if l < 0 {
				return nil
			}
			msg = msg[l:]
		}
	}
	return nil
}

type client struct {
	conn  *grpc.ClientConn
	token string
}

func (c *client) ctx(key string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	md := metadata.Pairs()
	if key != "" {
		md.Set(routingHeader, key)
	}
	if c.token != "" {
		md.Set("authorization", "Bearer "+c.token)
	}
	return metadata.NewOutgoingContext(ctx, md), cancel
}

func (c *client) unary(method, key string, req []byte) ([]byte, error) {
	ctx, cancel := c.ctx(key)
	defer cancel()
	var resp []byte
	err := c.conn.Invoke(ctx, "/polarway.v1.Polarway/"+method, &req, &resp, grpc.ForceCodec(rawCodec{}))
	return resp, err
}

// stream sends reqs and returns every response message.
func (c *client) stream(method, key string, reqs ...[]byte) ([][]byte, error) {
	ctx, cancel := c.ctx(key)
	defer cancel()
	s, err := c.conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/polarway.v1.Polarway/"+method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return nil, err
	}
	for _, r := range reqs {
		if err := s.SendMsg(&r); err != nil {
			break // the status comes with RecvMsg
		}
	}
	s.CloseSend()
	var out [][]byte
	for {
		var m []byte
		if err := s.RecvMsg(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

func dial(addr, tok string) (*client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	return &client{conn, tok}, err
}

func wantCode(err error, code codes.Code, what string) error {
	if status.Code(err) != code {
		return fmt.Errorf("%s: got %v, want %v", what, err, code)
	}
	return nil
}

// workload: a known set of calls on the worker and through the gateway, so that /metrics has
// requests of several methods and statuses, rows and bytes in both directions and cache traffic.
func workload(workerAddr, gatewayAddr string) error {
	var e errs
	w, err := dial(workerAddr, "")
	if err != nil {
		return err
	}
	defer w.conn.Close()
	if _, err := w.unary("Health", "", nil); err != nil {
		e.add("Health: %v", err)
	}
	// An Arrow IPC stream made by the server itself (no Arrow library needed here).
	msgs, err := w.stream("Query", "", str(1, "SELECT 42 AS answer, 'polarway' AS name FROM range(3)"))
	if err != nil {
		return fmt.Errorf("Query: %w", err)
	}
	var ipc []byte
	for _, m := range msgs {
		ipc = append(ipc, field(m, 1)...)
	}
	if len(ipc) == 0 {
		return fmt.Errorf("Query returned no IPC bytes")
	}
	header := bytesField(1, str(1, "ops_check"))
	resp, err := w.stream("Store", "ops_check", header, bytesField(2, ipc))
	if err != nil || len(resp) != 1 {
		return fmt.Errorf("Store: %v", err)
	}
	if name := string(field(field(resp[0], 1), 1)); name != "ops_check" {
		e.add("Store answered dataset %q, want ops_check", name)
	}
	for i := 0; i < 3; i++ {
		if _, err := w.stream("Load", "ops_check", str(1, "ops_check")); err != nil {
			e.add("Load: %v", err)
		}
	}
	_, err = w.unary("Describe", "no_such_dataset", str(1, "no_such_dataset"))
	if err := wantCode(err, codes.NotFound, "Describe of a missing dataset"); err != nil {
		e.add("%v", err)
	}
	if _, err := w.unary("CacheStats", "", nil); err != nil {
		e.add("CacheStats: %v", err)
	}

	// Through the gateway: the policy (policies/default.toml) must be in force.
	g, err := dial(gatewayAddr, token)
	if err != nil {
		return err
	}
	defer g.conn.Close()
	// Wait (bounded) until the gateway has seen the worker healthy.
	hc := healthpb.NewHealthClient(g.conn)
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.Status == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if i == 40 {
			return fmt.Errorf("gateway never SERVING: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if msgs, err := g.stream("Load", "ops_check", str(1, "ops_check")); err != nil || len(msgs) == 0 {
		e.add("Load through the gateway: %v", err)
	}
	if _, err := g.unary("List", "", nil); err != nil {
		e.add("List through the gateway: %v", err)
	}
	_, err = g.unary("Describe", "no_such_dataset", str(1, "no_such_dataset"))
	if err := wantCode(err, codes.NotFound, "Describe through the gateway"); err != nil {
		e.add("%v", err)
	}
	anon := &client{conn: g.conn}
	_, err = anon.unary("List", "", nil)
	if err := wantCode(err, codes.Unauthenticated, "List without a token (policies/default.toml)"); err != nil {
		e.add("%v", err)
	}
	return e.err()
}

var (
	envRe    = regexp.MustCompile(`POLARWAY_[A-Z0-9_]+`)
	helpFlag = regexp.MustCompile(`--[a-z0-9][a-z0-9-]*`)
)

func checkHelp(r *refs, l *liveResult) error {
	if l == nil || l.workerHelp == "" {
		return fmt.Errorf("no --help output (live start failed)")
	}
	var e errs
	set := func(text string, re *regexp.Regexp) []string { return re.FindAllString(text, -1) }
	for _, c := range []struct {
		what  string
		used  map[string][]string
		known []string
	}{
		{"polarway server env", r.workerEnv, set(l.workerHelp, envRe)},
		{"polarway server flag", r.workerFlags, set(l.workerHelp, helpFlag)},
		{"polarway-gateway env", r.gatewayEnv, append(set(l.gatewayHelp, envRe), policyTokenEnvs()...)},
		{"polarway-gateway flag", r.gatewayFlags, set(l.gatewayHelp, helpFlag)},
		{"polarway health flag", r.workerHealthFlags, set(l.workerHealthHelp, helpFlag)},
		{"polarway-gateway health flag", r.gatewayHealthFlags, set(l.gatewayHealthHelp, helpFlag)},
	} {
		if len(c.used) == 0 {
			e.add("%s: nothing collected from the files (collector broken?)", c.what)
		}
		for _, name := range sortedKeys(c.used) {
			if !slices.Contains(c.known, name) {
				e.add("%s %s (used in %s) is not in --help", c.what, name, strings.Join(c.used[name], ", "))
			}
		}
	}
	return e.err()
}

func checkReferencedMetrics(r *refs, l *liveResult) error {
	if l == nil || (l.workerMetrics == nil && l.gatewayMetrics == nil) {
		return fmt.Errorf("no /metrics scraped (is --metrics-enabled implemented? worker printed metrics address %q)", addrOf(l))
	}
	var missing []string
	for _, name := range sortedKeys(r.metrics) {
		if !l.workerMetrics[name] && !l.gatewayMetrics[name] {
			missing = append(missing, fmt.Sprintf("%s (used in %s)", name, strings.Join(r.metrics[name], "; ")))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d of %d referenced metric names are on neither /metrics:\n%s", len(missing), len(r.metrics), strings.Join(missing, "\n"))
	}
	return nil
}

func addrOf(l *liveResult) string {
	if l == nil || l.worker == nil {
		return ""
	}
	return l.worker.addr["metrics"]
}

// The contract of metrics.md: names each binary must export.
var (
	contractBoth = []string{"polarway_grpc_requests_total", "polarway_grpc_errors_total",
		"polarway_grpc_request_duration_seconds_bucket", "polarway_grpc_request_duration_seconds_sum",
		"polarway_grpc_request_duration_seconds_count", "polarway_grpc_requests_in_flight", "polarway_grpc_message_bytes_total"}
	contractWorker = []string{"polarway_rows_total", "polarway_cache_hit_rate", "polarway_cache_hits_total",
		"polarway_cache_misses_total", "polarway_cache_evictions_total", "polarway_cache_bytes", "polarway_cache_capacity_bytes",
		"polarway_cache_entries", "polarway_disk_cache_hits_total", "polarway_disk_cache_misses_total", "polarway_disk_cache_bytes",
		"polarway_disk_cache_capacity_bytes", "polarway_state_store_bytes_read_total", "polarway_state_store_bytes_written_total",
		"polarway_s3_requests_total", "polarway_s3_request_duration_seconds_bucket"}
	contractGateway = []string{"polarway_gateway_upstream_healthy", "polarway_gateway_upstream_requests_total",
		"polarway_gateway_retries_total", "polarway_gateway_ejections_total", "polarway_gateway_rate_limited_total",
		"polarway_gateway_policy_reloads_total"}
)

func checkContractMetrics(l *liveResult) error {
	if l == nil {
		return fmt.Errorf("live start failed")
	}
	var e errs
	for _, c := range []struct {
		who   string
		got   map[string]bool
		names []string
	}{
		{"worker", l.workerMetrics, append(slices.Clone(contractBoth), contractWorker...)},
		{"gateway", l.gatewayMetrics, append(slices.Clone(contractBoth), contractGateway...)},
	} {
		if c.got == nil {
			e.add("%s: no /metrics (metrics not enabled or not implemented)", c.who)
			continue
		}
		var missing []string
		for _, n := range c.names {
			if !c.got[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			e.add("%s /metrics lacks %d: %s", c.who, len(missing), strings.Join(missing, ", "))
		}
	}
	return e.err()
}

// policyTokenEnvs: the variables policies/*.toml read tokens and secrets from (token_env, secret_env).
func policyTokenEnvs() []string {
	var out []string
	files, _ := filepath.Glob(path("policies/*.toml"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, m := range regexp.MustCompile(`(?:token|secret)_env\s*=\s*"([A-Z0-9_]+)"`).FindAllStringSubmatch(string(b), -1) {
			out = append(out, m[1])
		}
	}
	return out
}
