package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/yaml"
)

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func checkK8s(r *refs) error {
	scheme := runtime.NewScheme()
	for _, f := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme} {
		if err := f(scheme); err != nil {
			return err
		}
	}
	// Strict: unknown and duplicate fields are errors, as `kubectl apply --validate=strict` makes them.
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})

	var e errs
	dir := path("deploy/k8s")
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	deployments := map[string]*appsv1.Deployment{}
	services := map[string]*corev1.Service{}
	configMaps := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}
	var hpas []*autoscalingv2.HorizontalPodAutoscaler
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if filepath.Base(f) == "kustomization.yaml" {
			if err := yaml.UnmarshalStrict(b, &kust); err != nil {
				e.add("kustomization.yaml: %v", err)
			}
			continue
		}
		for i, doc := range docSep.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			obj, gvk, err := dec.Decode([]byte(doc), nil, nil)
			if err != nil {
				e.add("%s document %d: %v", filepath.Base(f), i+1, err)
				continue
			}
			where := fmt.Sprintf("k8s %s/%s", gvk.Kind, filepath.Base(f))
			switch o := obj.(type) {
			case *appsv1.Deployment:
				deployments[o.Name] = o
			case *corev1.Service:
				services[o.Name] = o
			case *corev1.ConfigMap:
				configMaps[o.Name] = o
			case *corev1.Secret:
				secrets[o.Name] = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				hpas = append(hpas, o)
			default:
				e.add("%s: unexpected kind %s", where, gvk.Kind)
			}
		}
	}
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(kust.Resources, b) {
			e.add("kustomization.yaml does not list %s", b)
		}
	}
	for _, res := range kust.Resources {
		if _, err := os.Stat(filepath.Join(dir, res)); err != nil {
			e.add("kustomization.yaml lists missing %s", res)
		}
	}
	for _, d := range []struct{ name, bin, port string }{{"polarway-worker", "worker", "50052"}, {"polarway-gateway", "gateway", "50051"}} {
		dep := deployments[d.name]
		if dep == nil {
			e.add("no Deployment %s", d.name)
			continue
		}
		spec := dep.Spec.Template.Spec
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 10001 {
			e.add("%s: pod must run as non-root uid 10001", d.name)
		}
		if a := dep.Spec.Template.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "9090" {
			e.add("%s: prometheus.io/scrape and port 9090 annotations", d.name)
		}
		c := spec.Containers[0]
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if fmt.Sprint(ports["grpc"]) != d.port || ports["metrics"] != 9090 {
			e.add("%s: ports %v, want grpc %s and metrics 9090", d.name, ports, d.port)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.GRPC == nil || fmt.Sprint(c.ReadinessProbe.GRPC.Port) != d.port {
			e.add("%s: readiness must be a native grpc probe on %s", d.name, d.port)
		}
		if c.LivenessProbe == nil {
			e.add("%s: no liveness probe", d.name)
		}
		if c.Resources.Requests.Cpu().IsZero() {
			e.add("%s: needs a CPU request (the HPA scales on it)", d.name)
		}
		if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
			e.add("%s: allowPrivilegeEscalation must be false", d.name)
		}
		envs, flags := r.workerEnv, r.workerFlags
		if d.bin == "gateway" {
			envs, flags = r.gatewayEnv, r.gatewayFlags
		}
		for _, ev := range c.Env {
			if strings.HasPrefix(ev.Name, "POLARWAY_") {
				add(envs, ev.Name, "k8s "+d.name)
			}
			if ref := ev.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
				s := secrets[ref.SecretKeyRef.Name]
				if s == nil {
					e.add("%s: env %s names missing Secret %s", d.name, ev.Name, ref.SecretKeyRef.Name)
				} else if _, ok := s.StringData[ref.SecretKeyRef.Key]; !ok {
					e.add("%s: env %s names missing key %s", d.name, ev.Name, ref.SecretKeyRef.Key)
				}
			}
		}
		for _, m := range flagRe.FindAllStringSubmatch(strings.Join(c.Args, " "), -1) {
			add(flags, m[2], "k8s "+d.name)
		}
		for _, v := range spec.Volumes {
			if v.ConfigMap != nil && configMaps[v.ConfigMap.Name] == nil {
				e.add("%s: volume names missing ConfigMap %s", d.name, v.ConfigMap.Name)
			}
		}
	}
	if s := services["polarway-workers"]; s == nil || s.Spec.ClusterIP != corev1.ClusterIPNone || s.Spec.Ports[0].Port != 50052 {
		e.add("polarway-workers must be a headless Service on 50052")
	}
	if gw := deployments["polarway-gateway"]; gw != nil {
		args := strings.Join(gw.Spec.Template.Spec.Containers[0].Args, " ")
		if !strings.Contains(args, "--backend http://polarway-workers.$(POD_NAMESPACE).svc.cluster.local:50052") {
			e.add("gateway --backend must be the headless service's DNS name: %s", args)
		}
	}
	for _, h := range hpas {
		t := h.Spec.ScaleTargetRef
		if t.Kind != "Deployment" || deployments[t.Name] == nil {
			e.add("HPA %s targets missing %s/%s", h.Name, t.Kind, t.Name)
		}
		if len(h.Spec.Metrics) == 0 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			e.add("HPA %s must scale on CPU", h.Name)
		}
	}
	if len(hpas) != 2 {
		e.add("want an HPA for the worker and the gateway, got %d", len(hpas))
	}
	// ConfigMaps carry the same policy and dashboard as the repository's files.
	if pol, _ := os.ReadFile(path("policies/default.toml")); configMaps["polarway-policy"] == nil || configMaps["polarway-policy"].Data["default.toml"] != string(pol) {
		e.add("ConfigMap polarway-policy differs from policies/default.toml")
	}
	if dash, _ := os.ReadFile(path("deploy/grafana/dashboards/polarway.json")); configMaps["polarway-dashboard"] == nil || !sameJSON(configMaps["polarway-dashboard"].Data["dashboard.json"], string(dash)) {
		e.add("ConfigMap polarway-dashboard differs from deploy/grafana/dashboards/polarway.json")
	}
	return e.err()
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
