package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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

// startMoto runs moto_server (an S3-compatible server, the one the Rust s3 tests use) on a free
// loopback port and creates a bucket; it returns the endpoint.
func startMoto(bin, bucket string) (*proc, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	p := &proc{cmd: cmd, addr: map[string]string{}}
	endpoint := "http://127.0.0.1:" + port
	for i := 0; ; i++ {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
			c.Close()
			break
		}
		if i == 300 {
			p.stop()
			return nil, "", fmt.Errorf("moto_server did not listen within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodPut, endpoint+"/"+bucket, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		p.stop()
		return nil, "", err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		p.stop()
		return nil, "", fmt.Errorf("create bucket: %s", resp.Status)
	}
	return p, endpoint, nil
}

type liveResult struct {
	worker, gateway         *proc
	workerBin, gatewayBin   string
	workerHelp, gatewayHelp string
	workerHealthHelp        string
	gatewayHealthHelp       string
	gateway2, worker2, moto *proc
	dead                    string
	workerSamples           []sample
	gatewaySamples          []sample
	gateway2Samples         []sample
	cache                   cacheStats
	workerMetrics           map[string]bool
	gatewayMetrics          map[string]bool
	dataDir                 string
}

func (l *liveResult) stop() {
	l.gateway2.stop()
	l.worker2.stop()
	l.gateway.stop()
	l.worker.stop()
	l.moto.stop()
	if l.dataDir != "" {
		os.RemoveAll(l.dataDir)
	}
}

func help(bin string, args ...string) string {
	out, _ := exec.Command(bin, append(args, "--help")...).CombinedOutput()
	return string(out)
}

func runLive(workerBin, gatewayBin, motoBin string) (*liveResult, error) {
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
	// The worker as docker-compose.yml configures it: the s3 store (here moto for MinIO), metrics
	// on, all through the environment.
	var endpoint string
	if l.moto, endpoint, err = startMoto(motoBin, "polarway-state"); err != nil {
		return l, err
	}
	l.worker, err = start(workerBin, []string{"POLARWAY_METRICS_ENABLED=true", "POLARWAY_METRICS_PORT=0",
		"POLARWAY_HANDLE_STORE=s3", "POLARWAY_S3_BUCKET=polarway-state", "POLARWAY_S3_ENDPOINT=" + endpoint,
		"POLARWAY_S3_PATH_STYLE=true", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true"},
		"server", "--grpc-port", "0", "--data-dir", l.dataDir+"/data")
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
	collect := func(who string, p *proc, names *map[string]bool, samples *[]sample) {
		if p == nil || p.addr["metrics"] == "" {
			return
		}
		text, err := getMetrics(p.addr["metrics"])
		if err != nil {
			e.add("%s: %v", who, err)
			return
		}
		*samples = parseSamples(text)
		got, _ := scrape(p.addr["metrics"])
		if *names == nil {
			*names = map[string]bool{}
		}
		for n := range got {
			(*names)[n] = true
		}
	}
	if err := workload(l.worker.addr["listening"], l.gateway.addr["listening"]); err != nil {
		e.add("workload: %v", err)
	}
	if l.cache, err = readCacheStats(l.worker.addr["listening"]); err != nil {
		e.add("CacheStats: %v", err)
	}
	// The known workload's counts are read before the second gateway adds its own traffic.
	collect("worker", l.worker, &l.workerMetrics, &l.workerSamples)
	collect("gateway", l.gateway, &l.gatewayMetrics, &l.gatewaySamples)
	if err := gatewayEvents(l); err != nil {
		e.add("gateway events: %v", err)
	}
	// The second gateway's event-driven families count for the gateway's names.
	collect("second gateway", l.gateway2, &l.gatewayMetrics, &l.gateway2Samples)
	// Health subcommands (the Docker HEALTHCHECKs): exit 0 on a serving server, non-zero on a closed port.
	for _, h := range []struct{ bin, addr, help string }{
		{workerBin, l.worker.addr["listening"], l.workerHealthHelp},
		{gatewayBin, l.gateway.addr["listening"], l.gatewayHealthHelp},
	} {
		if !strings.Contains(h.help, "--addr") {
			e.add("%s has no `health --addr` subcommand yet (README, Metrics)", h.bin)
			continue
		}
		if out, err := exec.Command(h.bin, "health", "--addr", h.addr).CombinedOutput(); err != nil {
			e.add("%s health --addr %s: %v %s", h.bin, h.addr, err, out)
		}
		if err := exec.Command(h.bin, "health", "--addr", "127.0.0.1:1", "--timeout", "2").Run(); err == nil {
			e.add("%s health on a closed port exited 0", h.bin)
		}
	}
	return l, e.err()
}

// sample is one line of a /metrics page.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	sampleRe = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)
	labelRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func getMetrics(addr string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("GET /metrics: %v %s", err, resp.Status)
	}
	return string(b), nil
}

func parseSamples(text string) []sample {
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		m := sampleRe.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		l := map[string]string{}
		for _, kv := range labelRe.FindAllStringSubmatch(m[2], -1) {
			l[kv[1]] = kv[2]
		}
		out = append(out, sample{m[1], l, v})
	}
	return out
}

// value sums the samples of name whose labels include want (-1 when there is none).
func value(samples []sample, name string, want map[string]string) float64 {
	sum, found := 0.0, false
	for _, s := range samples {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && s.labels[k] == v
		}
		if ok {
			sum, found = sum+s.value, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// scrape returns the metric names of a /metrics page: sample names and the names of # TYPE lines.
func scrape(addr string) (map[string]bool, error) {
	b, err := getMetrics(addr)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, line := range strings.Split(b, "\n") {
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

// The metrics contract (README, "Metrics"): names each binary must export.
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

type cacheStats struct {
	hits, misses uint64
	hitRate      float64
}

// readCacheStats calls CacheStats on the worker and decodes hits (1), misses (2), hit_rate (3).
func readCacheStats(addr string) (cacheStats, error) {
	var cs cacheStats
	c, err := dial(addr, "")
	if err != nil {
		return cs, err
	}
	defer c.conn.Close()
	b, err := c.unary("CacheStats", "", nil)
	if err != nil {
		return cs, err
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return cs, fmt.Errorf("bad CacheStats response")
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if num == 1 {
				cs.hits = v
			} else if num == 2 {
				cs.misses = v
			}
			b = b[n:]
		case typ == protowire.Fixed64Type && num == 3:
			v, n := protowire.ConsumeFixed64(b)
			cs.hitRate = math.Float64frombits(v)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return cs, fmt.Errorf("bad CacheStats response")
			}
			b = b[n:]
		}
	}
	return cs, nil
}

// gatewayEvents starts a second gateway (a temporary policy, the worker plus a second worker) to
// produce the event-driven gateway metrics: the second worker dies, so calls routed to it are
// retried on the first and it is ejected (passively: active checks are 30 s apart); then a policy
// reload with a tight rate limit, calls rate limited, and a broken policy file refused.
func gatewayEvents(l *liveResult) error {
	pol := filepath.Join(l.dataDir, "policy.toml")
	write := func(rate int) error {
		return os.WriteFile(pol, []byte(fmt.Sprintf(`[limits]
rate = { per_second = %d, burst = %d }

[[identity]]
name = "ops"
token = "%s"
roles = ["admin"]

[roles.admin]
methods = ["*"]
datasets = ["*"]
`, rate, rate, token)), 0o600)
	}
	if err := write(1000); err != nil {
		return err
	}
	var err error
	if l.worker2, err = start(l.workerBin, nil, "server", "--grpc-port", "0", "--data-dir", l.dataDir+"/data2", "--handle-store", "memory"); err != nil {
		return err
	}
	l.dead = l.worker2.addr["listening"]
	l.gateway2, err = start(l.gatewayBin, []string{"POLARWAY_METRICS_PORT=0"},
		"--listen", "127.0.0.1:0", "--backend", "http://"+l.worker.addr["listening"], "--backend", "http://"+l.dead,
		"--policy", pol, "--policy-poll", "0.2", "--health-interval", "30", "--eject-after", "3")
	if err != nil {
		return err
	}
	var e errs
	g, err := dial(l.gateway2.addr["listening"], token)
	if err != nil {
		return err
	}
	defer g.conn.Close()
	// Both workers healthy, then the second one dies.
	for i := 0; ; i++ {
		_, err := g.unary("Describe", "warmup", str(1, "warmup"))
		if status.Code(err) == codes.NotFound {
			break
		}
		if i == 40 {
			return fmt.Errorf("second gateway never routed a call: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The gateway's first round of active health checks must be over before the kill: a check
	// still under way when the worker dies ejects it before any call could fail over.
	checked := fmt.Sprintf("polarway_gateway_upstream_healthy{backend=%q} 1", l.dead)
	for i := 0; ; i++ {
		if text, err := getMetrics(l.gateway2.addr["metrics"]); err == nil && strings.Contains(text, checked) {
			break
		}
		if i == 100 {
			return fmt.Errorf("second gateway never reported its first health check of %s", l.dead)
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.worker2.stop()
	// Describe is idempotent: calls that land on the dead worker are retried on the live one, so
	// every call still gets the live worker's answer.
	// 30 keys: with two workers, at least 3 (--eject-after) land on the dead one but for odds of 1 in 10^6.
	for i := 0; i < 30; i++ {
		key := fmt.Sprintf("missing_%d", i)
		if _, err := g.unary("Describe", key, str(1, key)); status.Code(err) != codes.NotFound {
			e.add("Describe %s with one worker dead: %v, want NOT_FOUND (retried on the live worker)", key, err)
		}
	}
	// A tighter policy (one reload accepted), calls over it, then a broken file (one refused).
	if err := write(1); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond)
	limited := false
	for i := 0; i < 5; i++ {
		_, err := g.unary("Describe", "ops_check", str(1, "ops_check"))
		limited = limited || status.Code(err) == codes.ResourceExhausted
	}
	if !limited {
		e.add("5 calls at once under a 1/s policy: none got RESOURCE_EXHAUSTED")
	}
	if err := os.WriteFile(pol, []byte("[limits]\nrate = \"not a table\"\n"), 0o600); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond)
	return e.err()
}

func checkWorkloadValues(l *liveResult) error {
	if l == nil {
		return fmt.Errorf("live start failed")
	}
	var e errs
	if l.workerSamples == nil {
		e.add("worker: no /metrics to check")
	}
	eq := func(who string, samples []sample, name string, labels map[string]string, want float64) {
		if samples == nil {
			return
		}
		if got := value(samples, name, labels); got != want {
			e.add("%s %s%v = %v, want %v; the page has: %s", who, name, labels, got, want, seen(samples, name))
		}
	}
	atLeast := func(who string, samples []sample, name string, labels map[string]string, want float64) {
		if samples == nil {
			return
		}
		if got := value(samples, name, labels); got < want {
			e.add("%s %s%v = %v, want at least %v; the page has: %s", who, name, labels, got, want, seen(samples, name))
		}
	}
	L := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	w, g, g2 := l.workerSamples, l.gatewaySamples, l.gateway2Samples
	// Worker: 3 Loads direct + 1 through the gateway; 2 Describes of a missing dataset; 1 Store of 3 rows.
	eq("worker", w, "polarway_grpc_requests_total", L("method", "Load", "status", "OK"), 4)
	eq("worker", w, "polarway_grpc_requests_total", L("method", "Store", "status", "OK"), 1)
	eq("worker", w, "polarway_grpc_requests_total", L("method", "Query", "status", "OK"), 1)
	eq("worker", w, "polarway_grpc_requests_total", L("method", "Describe", "status", "NOT_FOUND"), 2)
	eq("worker", w, "polarway_grpc_errors_total", L("method", "Describe", "status", "NOT_FOUND"), 2)
	eq("worker", w, "polarway_grpc_request_duration_seconds_count", L("method", "Load"), 4)
	eq("worker", w, "polarway_rows_total", L("method", "Store", "direction", "received"), 3)
	eq("worker", w, "polarway_rows_total", L("method", "Load", "direction", "sent"), 12)
	eq("worker", w, "polarway_rows_total", L("method", "Query", "direction", "sent"), 3)
	atLeast("worker", w, "polarway_grpc_message_bytes_total", L("method", "Store", "direction", "received"), 1)
	atLeast("worker", w, "polarway_grpc_message_bytes_total", L("method", "Load", "direction", "sent"), 1)
	// The s3 store: the Store's data and manifest were written to the bucket.
	atLeast("worker", w, "polarway_s3_requests_total", L("operation", "PutObject", "result", "ok"), 1)
	atLeast("worker", w, "polarway_state_store_bytes_written_total", nil, float64(1))
	// The cache metrics say what CacheStats says.
	eq("worker", w, "polarway_cache_hits_total", nil, float64(l.cache.hits))
	eq("worker", w, "polarway_cache_misses_total", nil, float64(l.cache.misses))
	if got := value(w, "polarway_cache_hit_rate", nil); w != nil && math.Abs(got-l.cache.hitRate) > 1e-9 {
		e.add("worker polarway_cache_hit_rate = %v, CacheStats.hit_rate = %v", got, l.cache.hitRate)
	}
	if l.cache.hits+l.cache.misses < 3 {
		e.add("CacheStats counts %d lookups after 4 loads", l.cache.hits+l.cache.misses)
	}
	// Gateway (policies/default.toml): 1 Load, 1 List, 1 Describe NOT_FOUND, 1 List UNAUTHENTICATED.
	eq("gateway", g, "polarway_grpc_requests_total", L("method", "Load", "status", "OK"), 1)
	eq("gateway", g, "polarway_grpc_requests_total", L("method", "List", "status", "OK"), 1)
	eq("gateway", g, "polarway_grpc_requests_total", L("method", "Describe", "status", "NOT_FOUND"), 1)
	eq("gateway", g, "polarway_grpc_requests_total", L("method", "List", "status", "UNAUTHENTICATED"), 1)
	eq("gateway", g, "polarway_grpc_errors_total", L("method", "List", "status", "UNAUTHENTICATED"), 1)
	eq("gateway", g, "polarway_gateway_upstream_healthy", L("backend", l.worker.addr["listening"]), 1)
	atLeast("gateway", g, "polarway_gateway_upstream_requests_total", L("backend", l.worker.addr["listening"]), 3)
	// Second gateway: a worker killed (retries, ejection), rate limited, one reload accepted, one refused.
	atLeast("second gateway", g2, "polarway_gateway_rate_limited_total", L("method", "Describe"), 1)
	atLeast("second gateway", g2, "polarway_grpc_requests_total", L("method", "Describe", "status", "RESOURCE_EXHAUSTED"), 1)
	atLeast("second gateway", g2, "polarway_gateway_ejections_total", L("backend", l.dead), 1)
	atLeast("second gateway", g2, "polarway_gateway_retries_total", L("method", "Describe"), 1)
	atLeast("second gateway", g2, "polarway_gateway_policy_reloads_total", L("result", "ok"), 1)
	atLeast("second gateway", g2, "polarway_gateway_policy_reloads_total", L("result", "refused"), 1)
	return e.err()
}

// seen lists a family's samples (a few), for failure messages.
func seen(samples []sample, name string) string {
	var out []string
	for _, s := range samples {
		if s.name == name && len(out) < 8 {
			out = append(out, fmt.Sprintf("%v=%v", s.labels, s.value))
		}
	}
	if len(out) == 0 {
		var names []string
		for _, s := range samples {
			if !slices.Contains(names, s.name) {
				names = append(names, s.name)
			}
		}
		return "no " + name + " (families: " + strings.Join(names, ", ") + ")"
	}
	return strings.Join(out, " ")
}
