package main

import (
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

var flagRe = regexp.MustCompile(`(^|\s|")(--[a-z0-9][a-z0-9-]*)`)

func checkDockerfile(r *refs) error {
	f, err := os.Open(path("Dockerfile"))
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		return err
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return err
	}
	var e errs
	byName := map[string]instructions.Stage{}
	for _, s := range stages {
		byName[s.Name] = s
	}
	// The base image a stage ends up on, following stage names.
	base := func(s instructions.Stage) string {
		for i := 0; i < 10; i++ {
			p, ok := byName[s.BaseName]
			if !ok {
				return s.BaseName
			}
			s = p
		}
		return s.BaseName
	}
	if b, ok := byName["builder"]; !ok || b.BaseName != "rust:1.95-bookworm" {
		e.add("builder stage must be FROM rust:1.95-bookworm")
	} else {
		cargo := false
		for _, c := range b.Commands {
			if run, ok := c.(*instructions.RunCommand); ok && strings.Contains(strings.Join(run.CmdLine, " "), "cargo build") {
				cmd := strings.Join(run.CmdLine, " ")
				for _, want := range []string{"--release", "--locked", "--bin polarway ", "--bin polarway-gateway"} {
					if !strings.Contains(cmd+" ", want) {
						e.add("builder: cargo build lacks %q", want)
					}
				}
				// Mount options are evaluated on expansion (no build args here: identity).
				if err := run.Expand(func(w string) (string, error) { return w, nil }); err != nil {
					e.add("builder: RUN flags: %v", err)
				}
				caches := 0
				for _, m := range instructions.GetMounts(run) {
					if m.Type == instructions.MountTypeCache {
						caches++
					}
				}
				if caches < 2 {
					e.add("builder: cargo build needs BuildKit cache mounts (registry and target), found %d", caches)
				}
				cargo = true
			}
		}
		if !cargo {
			e.add("builder: no RUN cargo build")
		}
	}
	// Last stage = what `docker build .` produces: the worker, the guide's image.
	if stages[len(stages)-1].Name != "worker" {
		e.add("the last stage must be worker (docker build . builds the user guide's image)")
	}
	want := map[string]struct {
		bin, port string
		cmd       []string
	}{
		"worker":  {"polarway", "50052", []string{"server", "--grpc-port", "50052", "--data-dir", "/data"}},
		"gateway": {"polarway-gateway", "50051", nil},
	}
	for name, w := range want {
		s, ok := byName[name]
		if !ok {
			e.add("no %s target", name)
			continue
		}
		if b := base(s); b != "debian:bookworm-slim" {
			e.add("%s: runtime base is %s, want debian:bookworm-slim", name, b)
		}
		var user, health string
		var entry, cmd []string
		var exposed []string
		// Commands of the whole chain (the runtime base's count too).
		chain := []instructions.Stage{s}
		for p, ok := byName[s.BaseName]; ok; p, ok = byName[p.BaseName] {
			chain = append([]instructions.Stage{p}, chain...)
		}
		for _, st := range chain {
			for _, c := range st.Commands {
				switch c := c.(type) {
				case *instructions.UserCommand:
					user = c.User
				case *instructions.HealthCheckCommand:
					health = strings.Join(c.Health.Test, " ")
				case *instructions.EntrypointCommand:
					entry = c.CmdLine
				case *instructions.CmdCommand:
					cmd = c.CmdLine
				case *instructions.ExposeCommand:
					exposed = append(exposed, c.Ports...)
				case *instructions.EnvCommand:
					for _, kv := range c.Env {
						if strings.HasPrefix(kv.Key, "POLARWAY_") {
							add(map[bool]map[string][]string{true: r.workerEnv, false: r.gatewayEnv}[name == "worker"], kv.Key, "Dockerfile "+name)
						}
					}
				case *instructions.RunCommand:
					if strings.Contains(strings.Join(c.CmdLine, " "), "apt-get install") {
						for _, tool := range []string{"build-essential", "gcc", "protobuf-compiler", "cargo", "curl"} {
							if strings.Contains(strings.Join(c.CmdLine, " "), " "+tool) {
								e.add("%s: runtime installs build tool %s", name, tool)
							}
						}
					}
				}
			}
		}
		if user == "" || user == "root" || strings.HasPrefix(user, "0:") || user == "0" {
			e.add("%s: USER must be non-root, got %q", name, user)
		}
		if !strings.HasPrefix(user, "10001") {
			e.add("%s: USER must be uid 10001, got %q", name, user)
		}
		wantHealth := "CMD " + w.bin + " health --addr 127.0.0.1:" + w.port
		if health != wantHealth {
			e.add("%s: HEALTHCHECK %q, want %q", name, health, wantHealth)
		}
		if !slices.Equal(entry, []string{w.bin}) {
			e.add("%s: ENTRYPOINT %v, want [%s]", name, entry, w.bin)
		}
		if w.cmd != nil && !slices.Equal(cmd, w.cmd) {
			e.add("%s: CMD %v, want %v (the guide's command)", name, cmd, w.cmd)
		}
		for _, p := range []string{w.port, "9090"} {
			if !slices.Contains(exposed, p) {
				e.add("%s: EXPOSE lacks %s", name, p)
			}
		}
		healthFlags := r.workerHealthFlags
		if name == "gateway" {
			healthFlags = r.gatewayHealthFlags
		}
		for _, m := range flagRe.FindAllStringSubmatch(health, -1) {
			add(healthFlags, m[2], "Dockerfile HEALTHCHECK "+name)
		}
		for _, m := range flagRe.FindAllStringSubmatch(strings.Join(cmd, " "), -1) {
			add(r.workerFlags, m[2], "Dockerfile CMD")
		}
	}
	return e.err()
}
