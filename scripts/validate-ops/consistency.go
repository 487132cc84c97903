package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
)

// Ports, host names and the routing header, as each file states them.
func checkConsistency() error {
	var e errs
	p, err := loadCompose("docker-compose.yml", []string{"POLARWAY_AUTH_TOKEN=x"}, "nginx", "envoy")
	if err != nil {
		return err
	}
	nginx, err := os.ReadFile(path("deploy/nginx/nginx.conf"))
	if err != nil {
		return err
	}
	var upstreams []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+([a-z0-9.-]+:\d+);`).FindAllStringSubmatch(string(nginx), -1) {
		upstreams = append(upstreams, m[1])
	}
	want := []string{"worker-1:50052", "worker-2:50052", "worker-3:50052"}
	if !slices.Equal(upstreams, want) {
		e.add("nginx upstreams %v, want %v", upstreams, want)
	}
	if !strings.Contains(string(nginx), "client_max_body_size 0;") || !strings.Contains(string(nginx), "listen 50052 http2;") {
		e.add("nginx.conf: needs the guide's listen 50052 http2 and client_max_body_size 0")
	}
	// Compose services exist for every host the other files name.
	for _, h := range []string{"worker-1", "worker-2", "worker-3", "gateway", "minio", "prometheus"} {
		if _, err := p.GetService(h); err != nil {
			e.add("host %s named by nginx/envoy/prometheus/compose is not a compose service", h)
		}
	}
	env, _ := p.GetService("envoy")
	if len(env.Ports) == 0 || env.Ports[0].Target != 50051 {
		e.add("compose envoy must map to envoy.yaml's listener port 50051")
	}
	if b, err := loadEnvoy(); err == nil {
		if port := b.StaticResources.Listeners[0].Address.GetSocketAddress().GetPortValue(); port != 50051 {
			e.add("envoy listener on %d, compose maps 50051", port)
		}
	}
	gw, _ := p.GetService("gateway")
	if v := gw.Environment["POLARWAY_GATEWAY_LISTEN"]; v == nil || !strings.HasSuffix(*v, ":50051") {
		e.add("compose gateway must listen on :50051")
	}
	// The routing header is the protocol's, and the one Envoy hashes on (checked in envoy).
	proto, _ := os.ReadFile(path("proto/polarway/v1/polarway.proto"))
	if !strings.Contains(string(proto), routingHeader) {
		e.add("%s is not the protocol's routing header", routingHeader)
	}
	return e.err()
}
