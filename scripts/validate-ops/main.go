// validate-ops checks Polarway's operations files (Dockerfile, compose files, envoy.yaml, Kubernetes
// manifests, Prometheus/Grafana config) with the upstream libraries that consume them, then
// cross-checks them against the real binaries: their --help (flags, env vars) and their /metrics.
//
//	go run . -root ../.. -worker PATH/polarway -gateway PATH/polarway-gateway -moto PATH/moto_server
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
)

// refs collects what the files use, for the cross-checks against the binaries.
type refs struct {
	workerEnv, gatewayEnv     map[string][]string // POLARWAY_* name -> where
	workerFlags, gatewayFlags map[string][]string // --flag -> where (polarway server / polarway-gateway)
	metrics                   map[string][]string // metric name -> where
	workerHealthFlags         map[string][]string // flags of `polarway health`
	gatewayHealthFlags        map[string][]string // flags of `polarway-gateway health`
}

func newRefs() *refs {
	return &refs{map[string][]string{}, map[string][]string{}, map[string][]string{}, map[string][]string{},
		map[string][]string{}, map[string][]string{}, map[string][]string{}}
}

func add(m map[string][]string, key, where string) {
	for _, w := range m[key] {
		if w == where {
			return
		}
	}
	m[key] = append(m[key], where)
}

var root string

func path(p string) string { return filepath.Join(root, p) }

type check struct {
	name string
	run  func() error
}

func main() {
	flag.StringVar(&root, "root", "../..", "repository root")
	worker := flag.String("worker", "", "polarway binary (live checks)")
	gateway := flag.String("gateway", "", "polarway-gateway binary (live checks)")
	moto := flag.String("moto", "", "moto_server binary (the worker's s3 store)")
	only := flag.String("only", "", "run only checks whose name contains this")
	flag.Parse()
	root, _ = filepath.Abs(root)
	// compose-go warns through logrus (e.g. the guide's obsolete `version:`); keep the report clean.
	logrus.SetLevel(logrus.ErrorLevel)

	r := newRefs()
	var live *liveResult
	checks := []check{
		{"dockerfile: parses (buildkit), targets, non-root users, healthchecks", func() error { return checkDockerfile(r) }},
		{"compose: docker-compose.yml and docker-compose.single.yml load (compose-go, schema on)", func() error { return checkCompose(r) }},
		{"envoy: envoy.yaml is a valid bootstrap (go-control-plane, typed configs validated)", func() error { return checkEnvoy() }},
		{"k8s: manifests strict-decode into k8s.io/api types and agree with each other", func() error { return checkK8s(r) }},
		{"prometheus: prometheus.yml loads (prometheus/config), jobs and targets", func() error { return checkPrometheusConfig() }},
		{"promql: alert rules load (rulefmt) and every dashboard expression parses", func() error { return checkPromQL(r) }},
		{"docs: metric names in docs/operations.md", func() error { return collectDocMetrics(r) }},
		{"consistency: ports, hosts and the routing header across compose, envoy, nginx, k8s, prometheus", func() error { return checkConsistency() }},
		{"live: worker and gateway start (gateway with policies/default.toml), workload, health subcommands", func() (err error) {
			live, err = runLive(*worker, *gateway, *moto)
			return err
		}},
		{"live: every POLARWAY_* env var and --flag used exists in the binaries' --help", func() error { return checkHelp(r, live) }},
		{"live: every metric referenced (dashboard, alerts, docs) is in a real /metrics", func() error { return checkReferencedMetrics(r, live) }},
		{"live: /metrics values match the workload (counts, status labels, rows, cache vs CacheStats, gateway events)", func() error { return checkWorkloadValues(live) }},
		{"live: every metric of the contract (README, Metrics) is exported by the right binary", func() error { return checkContractMetrics(live) }},
	}
	passed, failed := 0, 0
	for _, c := range checks {
		if *only != "" && !strings.Contains(c.name, *only) {
			continue
		}
		if err := c.run(); err != nil {
			failed++
			fmt.Printf("FAIL %s\n     %s\n", c.name, strings.ReplaceAll(err.Error(), "\n", "\n     "))
		} else {
			passed++
			fmt.Printf("ok   %s\n", c.name)
		}
	}
	if live != nil {
		live.stop()
	}
	fmt.Printf("validate-ops: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// errs joins problems into one error (nil when there are none).
type errs []string

func (e *errs) add(format string, a ...any) { *e = append(*e, fmt.Sprintf(format, a...)) }
func (e errs) err() error {
	if len(e) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(e, "\n"))
}

func sortedKeys(m map[string][]string) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
