package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

func loadCompose(file string, env []string, profiles ...string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{path(file)},
		cli.WithWorkingDirectory(root), cli.WithName("polarway"), cli.WithEnv(env), cli.WithProfiles(profiles))
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

var workers = []string{"worker-1", "worker-2", "worker-3"}

func checkCompose(r *refs) error {
	var e errs
	env := []string{"POLARWAY_AUTH_TOKEN=validate-ops-token"}
	p, err := loadCompose("docker-compose.yml", env, "nginx", "envoy")
	if err != nil {
		return fmt.Errorf("docker-compose.yml: %w", err)
	}
	// The admin token is required: without it the file must not load.
	if _, err := loadCompose("docker-compose.yml", nil); err == nil || !strings.Contains(err.Error(), "POLARWAY_AUTH_TOKEN") {
		e.add("docker-compose.yml must refuse to load without POLARWAY_AUTH_TOKEN (got %v)", err)
	}
	for _, name := range []string{"gateway", "minio", "minio-init", "prometheus", "grafana", "polarway-lb", "envoy", "volume-init"} {
		if _, err := p.GetService(name); err != nil {
			e.add("service %s missing", name)
		}
	}
	published := func(s types.ServiceConfig, port string) bool {
		for _, pc := range s.Ports {
			if pc.Published == port {
				return true
			}
		}
		return false
	}
	gw, _ := p.GetService("gateway")
	if !published(gw, "50051") {
		e.add("gateway must publish 50051")
	}
	for _, w := range workers {
		if d, ok := gw.DependsOn[w]; !ok || d.Condition != types.ServiceConditionHealthy {
			e.add("gateway must depend on %s being healthy", w)
		}
	}
	collect := func(s types.ServiceConfig, envs, flags map[string][]string) {
		for k := range s.Environment {
			if strings.HasPrefix(k, "POLARWAY_") {
				add(envs, k, "compose "+s.Name)
			}
		}
		for _, m := range flagRe.FindAllStringSubmatch(strings.Join(s.Command, " "), -1) {
			add(flags, m[2], "compose "+s.Name)
		}
	}
	collect(gw, r.gatewayEnv, r.gatewayFlags)
	if gw.Environment["POLARWAY_GATEWAY_POLICY"] == nil || !strings.HasPrefix(*gw.Environment["POLARWAY_GATEWAY_POLICY"], "/etc/polarway/policies/") {
		e.add("gateway: POLARWAY_GATEWAY_POLICY must point into the mounted policies/")
	}
	for _, w := range workers {
		s, err := p.GetService(w)
		if err != nil {
			e.add("service %s missing", w)
			continue
		}
		collect(s, r.workerEnv, r.workerFlags)
		get := func(k string) string {
			if v := s.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		for k, v := range map[string]string{
			"POLARWAY_BIND_ADDRESS": "0.0.0.0:50052", "POLARWAY_HANDLE_STORE": "s3", "POLARWAY_STATE_DIR": "/state",
			"POLARWAY_METRICS_ENABLED": "true", "POLARWAY_METRICS_PORT": "9090", "POLARWAY_S3_ENDPOINT": "http://minio:9000",
			"POLARWAY_S3_PATH_STYLE": "true", "POLARWAY_PARQUET_PATH": "/data/cold",
		} {
			if get(k) != v {
				e.add("%s: %s=%q, want %q", w, k, get(k), v)
			}
		}
		for _, k := range []string{"POLARWAY_S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
			if get(k) == "" {
				e.add("%s: %s unset", w, k)
			}
		}
		vols := map[string]string{}
		for _, v := range s.Volumes {
			vols[v.Target] = v.Source
		}
		if vols["/data"] != "shared-data" || vols["/state"] != "shared-state" {
			e.add("%s: volumes must be the guide's shared-data:/data and shared-state:/state, got %v", w, vols)
		}
		if s.HealthCheck == nil || !slices.Contains(s.HealthCheck.Test, "health") {
			e.add("%s: healthcheck must run polarway health", w)
		}
		if d, ok := s.DependsOn["minio-init"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			e.add("%s: must wait for the bucket (minio-init completed)", w)
		}
		if !slices.Equal(s.Command[:3], []string{"server", "--grpc-port", "50052"}) {
			e.add("%s: command %v", w, s.Command)
		}
	}
	// POLARWAY_HANDLE_STORE=external gives the guide's shared-directory setup.
	if pe, err := loadCompose("docker-compose.yml", append(env, "POLARWAY_HANDLE_STORE=external")); err != nil {
		e.add("with POLARWAY_HANDLE_STORE=external: %v", err)
	} else if s, _ := pe.GetService("worker-2"); s.Environment["POLARWAY_HANDLE_STORE"] == nil || *s.Environment["POLARWAY_HANDLE_STORE"] != "external" {
		e.add("POLARWAY_HANDLE_STORE=external does not reach the workers")
	}
	// Profiles: nginx and envoy only when asked for.
	if pd, err := loadCompose("docker-compose.yml", env); err == nil {
		for _, s := range []string{"polarway-lb", "envoy"} {
			if _, err := pd.GetService(s); err == nil {
				e.add("%s must sit behind a profile", s)
			}
		}
	}
	if lb, err := p.GetService("polarway-lb"); err == nil && !published(lb, "50052") {
		e.add("polarway-lb must publish 50052 (the guide's port)")
	}
	// Every bind mount's source exists in the repository.
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					e.add("%s: bind mount source %s does not exist", s.Name, v.Source)
				}
			}
		}
		if s.Build != nil && s.Build.Target != "worker" && s.Build.Target != "gateway" {
			e.add("%s: build target %q is not a Dockerfile target", s.Name, s.Build.Target)
		}
	}

	ps, err := loadCompose("docker-compose.single.yml", nil)
	if err != nil {
		return fmt.Errorf("docker-compose.single.yml: %w", err)
	}
	s, err := ps.GetService("polarway-server")
	if err != nil {
		e.add("docker-compose.single.yml: no polarway-server")
	} else {
		if s.Image != "polarway/polarway:latest" || !slices.Equal(s.Command, []string{"server", "--grpc-port", "50052", "--data-dir", "/data"}) {
			e.add("docker-compose.single.yml: image/command differ from the guide: %s %v", s.Image, s.Command)
		}
		collect(s, r.workerEnv, r.workerFlags)
	}
	return e.err()
}
