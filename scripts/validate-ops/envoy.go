package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Every extension envoy.yaml names, so that its typed_config Anys resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	localrl "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/request_id/uuid/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

type validator interface{ ValidateAll() error }

// validateDeep runs protoc-gen-validate's rules on m and on every message packed in an Any below
// it (ValidateAll does not look inside Anys: typed_config would go unchecked).
func validateDeep(m proto.Message, at string) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
	}
	var err error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		visit := func(msg protoreflect.Message, where string) {
			if err != nil {
				return
			}
			if a, ok := msg.Interface().(*anypb.Any); ok {
				inner, e := a.UnmarshalNew()
				if e != nil {
					err = fmt.Errorf("%s: %w", where, e)
					return
				}
				err = validateDeep(inner, where+"<"+a.TypeUrl+">")
				return
			}
			err = validateDeep(msg.Interface(), where)
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message(), fmt.Sprintf("%s.%s[%d]", at, fd.Name(), i))
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					visit(mv.Message(), fmt.Sprintf("%s.%s[%s]", at, fd.Name(), k.String()))
					return err == nil
				})
			}
		default:
			visit(v.Message(), at+"."+string(fd.Name()))
		}
		return err == nil
	})
	return err
}

func loadEnvoy() (*bootstrapv3.Bootstrap, error) {
	y, err := os.ReadFile(path("envoy/envoy.yaml"))
	if err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, err
	}
	var b bootstrapv3.Bootstrap
	// Unknown fields fail (DiscardUnknown is false); Anys resolve through the imports above.
	if err := (protojson.UnmarshalOptions{}).Unmarshal(j, &b); err != nil {
		return nil, err
	}
	return &b, validateDeep(&b, "bootstrap")
}

func checkEnvoy() error {
	b, err := loadEnvoy()
	if err != nil {
		return err
	}
	var e errs
	var workersCluster *clusterv3.Cluster
	for _, c := range b.StaticResources.Clusters {
		if c.Name == "polarway_workers" {
			workersCluster = c
		}
	}
	if workersCluster == nil {
		return fmt.Errorf("no polarway_workers cluster")
	}
	if workersCluster.LbPolicy != clusterv3.Cluster_RING_HASH {
		e.add("polarway_workers: lb_policy %v, want RING_HASH", workersCluster.LbPolicy)
	}
	if len(workersCluster.HealthChecks) == 0 || workersCluster.HealthChecks[0].GetGrpcHealthCheck() == nil {
		e.add("polarway_workers: needs a grpc_health_check")
	}
	if workersCluster.OutlierDetection == nil {
		e.add("polarway_workers: needs outlier_detection")
	}
	var hosts []string
	for _, le := range workersCluster.LoadAssignment.Endpoints[0].LbEndpoints {
		sa := le.GetEndpoint().Address.GetSocketAddress()
		hosts = append(hosts, fmt.Sprintf("%s:%d", sa.Address, sa.GetPortValue()))
	}
	if !slices.Equal(hosts, []string{"worker-1:50052", "worker-2:50052", "worker-3:50052"}) {
		e.add("polarway_workers endpoints %v, want the compose workers on 50052", hosts)
	}
	// The connection manager and its routes.
	var m hcm.HttpConnectionManager
	if err := b.StaticResources.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&m); err != nil {
		return err
	}
	rateLimitOK := false
	for _, f := range m.HttpFilters {
		var rl localrl.LocalRateLimit
		if f.GetTypedConfig().UnmarshalTo(&rl) == nil && rl.RateLimitedAsResourceExhausted {
			rateLimitOK = true
		}
	}
	if !rateLimitOK {
		e.add("local_ratelimit must answer RESOURCE_EXHAUSTED (rate_limited_as_resource_exhausted)")
	}
	if names := filterNames(&m); names[len(names)-1] != "envoy.filters.http.router" || !slices.Contains(names, "envoy.filters.http.jwt_authn") {
		e.add("http filters %v: need jwt_authn and router last", names)
	}
	idempotent := []string{"Load", "List", "Describe", "Health", "CacheStats"}
	streaming := []string{"Load", "Query", "Store"}
	seen := map[string]*routev3.RouteAction{}
	for _, rt := range m.GetRouteConfig().VirtualHosts[0].Routes {
		p := rt.GetMatch().GetPrefix()
		method := strings.TrimPrefix(p, "/polarway.v1.Polarway/")
		ra := rt.GetRoute()
		seen[p] = ra
		if p == "/" {
			continue
		}
		if ra.GetCluster() != "polarway_workers" {
			e.add("route %s: cluster %s", p, ra.GetCluster())
		}
		if len(ra.HashPolicy) == 0 || ra.HashPolicy[0].GetHeader().GetHeaderName() != routingHeader {
			e.add("route %s: hash_policy must hash the %s header", p, routingHeader)
		}
		if ra.GetMaxStreamDuration().GetGrpcTimeoutHeaderMax() == nil {
			e.add("route %s: grpc-timeout must be honoured (max_stream_duration.grpc_timeout_header_max)", p)
		}
		retried := ra.RetryPolicy != nil
		wantRetry := slices.Contains(idempotent, method) || p == "/grpc.health.v1.Health/"
		if retried != wantRetry {
			e.add("route %s: retry_policy present=%v, want %v (idempotent methods only)", p, retried, wantRetry)
		}
		if retried && !strings.Contains(ra.RetryPolicy.RetryOn, "unavailable") {
			e.add("route %s: retry_on must include unavailable", p)
		}
		if slices.Contains(streaming, method) && (ra.Timeout == nil || ra.Timeout.AsDuration() != 0) {
			e.add("route %s: streaming route needs timeout: 0s", p)
		}
	}
	for _, m := range append(idempotent, "Query", "Store", "Delete") {
		if seen["/polarway.v1.Polarway/"+m] == nil {
			e.add("no route for %s", m)
		}
	}
	return e.err()
}

func filterNames(m *hcm.HttpConnectionManager) []string {
	var n []string
	for _, f := range m.HttpFilters {
		n = append(n, f.Name)
	}
	return n
}

const routingHeader = "x-polarway-key"
