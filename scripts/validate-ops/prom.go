package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func checkPrometheusConfig() error {
	cfg, err := config.LoadFile(path("deploy/prometheus/prometheus.yml"), false, quiet)
	if err != nil {
		return err
	}
	want := map[string][]string{
		"polarway-gateway": {"gateway:9090"},
		"polarway-worker":  {"worker-1:9090", "worker-2:9090", "worker-3:9090"},
	}
	var e errs
	got := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, c := range sc.ServiceDiscoveryConfigs {
			if sg, ok := c.(interface {
				MarshalYAML() (any, error)
			}); ok {
				_ = sg
			}
		}
		// Static targets, as written.
		for _, tg := range staticTargets(sc) {
			got[sc.JobName] = append(got[sc.JobName], tg)
		}
	}
	for job, targets := range want {
		if !slices.Equal(got[job], targets) {
			e.add("job %s targets %v, want %v", job, got[job], targets)
		}
	}
	if len(cfg.RuleFiles) != 1 || cfg.RuleFiles[0] != "/etc/prometheus/alerts.yml" {
		e.add("rule_files %v, want /etc/prometheus/alerts.yml (mounted by docker-compose.yml)", cfg.RuleFiles)
	}
	return e.err()
}

func staticTargets(sc *config.ScrapeConfig) []string {
	var out []string
	for _, c := range sc.ServiceDiscoveryConfigs {
		b, err := json.Marshal(c)
		if err != nil {
			continue
		}
		var groups []struct {
			Targets []string `json:"targets"`
		}
		if json.Unmarshal(b, &groups) == nil {
			for _, g := range groups {
				out = append(out, g.Targets...)
			}
		}
	}
	return out
}

var promqlParser = parser.NewParser(parser.Options{})

// metricNames returns the metric names an expression selects.
func metricNames(expr string) ([]string, error) {
	x, err := promqlParser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(x, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, nil
}

func checkPromQL(r *refs) error {
	var e errs
	groups, errsList := rulefmt.ParseFile(path("deploy/prometheus/alerts.yml"), false, model.UTF8Validation, promqlParser, quiet)
	for _, err := range errsList {
		e.add("alerts.yml: %v", err)
	}
	if groups != nil {
		for _, g := range groups.Groups {
			for _, rule := range g.Rules {
				names, err := metricNames(rule.Expr)
				if err != nil {
					e.add("alert %s: %v", rule.Alert, err)
				}
				for _, n := range names {
					if n != "up" {
						add(r.metrics, n, "alert "+rule.Alert)
					}
				}
			}
		}
	}
	b, err := os.ReadFile(path("deploy/grafana/dashboards/polarway.json"))
	if err != nil {
		return err
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	// The provisioned datasource is the one the panels name, and points at the compose Prometheus.
	var prov struct {
		Datasources []struct{ UID, URL, Type string } `json:"datasources"`
	}
	if y, err := os.ReadFile(path("deploy/grafana/provisioning/datasources/prometheus.yml")); err != nil {
		e.add("%v", err)
	} else if err := yaml.Unmarshal(y, &prov); err != nil || len(prov.Datasources) != 1 ||
		prov.Datasources[0].UID != "prometheus" || prov.Datasources[0].URL != "http://prometheus:9090" {
		e.add("grafana datasource provisioning: want uid prometheus at http://prometheus:9090, got %+v %v", prov, err)
	}
	titles := map[string]string{}
	for _, p := range dash.Panels {
		if p.Datasource.UID != "prometheus" {
			e.add("panel %q: datasource uid %q is not the provisioned one (prometheus)", p.Title, p.Datasource.UID)
		}
		for _, t := range p.Targets {
			titles[p.Title] = t.Expr
			names, err := metricNames(t.Expr)
			if err != nil {
				e.add("panel %q: %v", p.Title, err)
			}
			for _, n := range names {
				add(r.metrics, n, "dashboard "+p.Title)
			}
		}
	}
	// The user guide's two panels, as the brief fixes them.
	if titles["Requests/sec"] != "rate(polarway_grpc_requests_total[1m])" {
		e.add("panel Requests/sec must be rate(polarway_grpc_requests_total[1m])")
	}
	if _, ok := titles["P95 Latency"]; !ok {
		e.add("no P95 Latency panel")
	}
	for _, want := range []string{"polarway_grpc_errors_total", "polarway_cache_hit_rate", "polarway_s3_requests_total",
		"polarway_state_store_bytes_read_total", "polarway_gateway_upstream_requests_total", "polarway_grpc_requests_in_flight",
		"polarway_grpc_message_bytes_total", "polarway_rows_total", "polarway_gateway_upstream_healthy",
		"polarway_gateway_retries_total", "polarway_gateway_ejections_total", "polarway_gateway_rate_limited_total"} {
		found := false
		for _, w := range r.metrics[want] {
			found = found || regexp.MustCompile(`^dashboard `).MatchString(w)
		}
		if !found {
			e.add("dashboard has no panel on %s", want)
		}
	}
	return e.err()
}

var metricInText = regexp.MustCompile(`\bpolarway_[a-z0-9_]*[a-z0-9]`)

func collectDocMetrics(r *refs) error {
	b, err := os.ReadFile(path("docs/operations.md"))
	if err != nil {
		return err
	}
	for _, m := range metricInText.FindAllString(string(b), -1) {
		add(r.metrics, m, "docs/operations.md")
	}
	return nil
}
