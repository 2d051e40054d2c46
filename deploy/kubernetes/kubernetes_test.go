package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/svc"
	"github.com/switchyard/switchyard/hitch/up"
	"github.com/switchyard/switchyard/kit/discovery/registry"
	"github.com/switchyard/switchyard/proxy"
)

// renders are the directories `kubectl apply -k` is pointed at, with the
// Secrets each expects the operator to have created (docs/kubernetes.md
// says how; TestDocsNameExternalSecrets holds it to that).
var renders = []struct {
	dir             string
	externalSecrets []string
	datastores      bool // PostgreSQL, Redis and NATS are Services of the render
}{
	{"base", []string{"hitch-postgres", "switchyard-admin"}, false},
	{"datastores", nil, true},
	{"overlays/single-node", nil, true},
	{"overlays/production", []string{"hitch-postgres", "switchyard-admin"}, false},
}

func mustRender(t *testing.T, dir string, external ...string) *set {
	t.Helper()
	objs, err := render(dir)
	if err != nil {
		t.Fatalf("rendering %s: %v", dir, err)
	}
	if err := decode(objs); err != nil {
		t.Fatalf("decoding %s:\n%v", dir, err)
	}
	return newSet(objs, external...)
}

func TestManifestsDecodeAndCrossReference(t *testing.T) {
	for _, r := range renders {
		t.Run(r.dir, func(t *testing.T) {
			s := mustRender(t, r.dir, r.externalSecrets...)
			if len(s.objs) == 0 {
				t.Fatal("rendered nothing")
			}
			for _, e := range s.check() {
				t.Error(e)
			}
		})
	}
}

// TestOverlaysRender checks what each overlay changes: the namespace on
// everything, the image, and the patched values.
func TestOverlaysRender(t *testing.T) {
	for _, tc := range []struct {
		dir, image       string
		gatewayReplicas  int32
		gatewayHPAMax    int32
		ridesMinReplicas int32
	}{
		{"overlays/single-node", "switchyard:dev", 1, 3, 2},
		{"overlays/production", "registry.example.com/switchyard:v0.1.0", 3, 20, 3},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			s := mustRender(t, tc.dir, "hitch-postgres", "switchyard-admin")
			for _, o := range s.objs {
				if o.kind != "Namespace" && o.namespace != "hitch" {
					t.Errorf("%s: namespace %q, expected hitch", o.key(), o.namespace)
				}
			}
			for _, w := range s.workloads() {
				for _, c := range w.pod.Spec.Containers {
					if strings.Contains(c.Image, "switchyard") && c.Image != tc.image {
						t.Errorf("%s container %s: image %q, expected %q", w.o.key(), c.Name, c.Image, tc.image)
					}
				}
			}
			gw := s.byKey["Deployment/gateway"].typed.(*appsv1.Deployment)
			if *gw.Spec.Replicas != tc.gatewayReplicas {
				t.Errorf("gateway replicas %d, expected %d", *gw.Spec.Replicas, tc.gatewayReplicas)
			}
			hpa := s.byKey["HorizontalPodAutoscaler/gateway"].typed.(*autoscalingv2.HorizontalPodAutoscaler)
			if hpa.Spec.MaxReplicas != tc.gatewayHPAMax {
				t.Errorf("gateway HPA maxReplicas %d, expected %d", hpa.Spec.MaxReplicas, tc.gatewayHPAMax)
			}
			rides := s.byKey["HorizontalPodAutoscaler/rides"].typed.(*autoscalingv2.HorizontalPodAutoscaler)
			if *rides.Spec.MinReplicas != tc.ridesMinReplicas {
				t.Errorf("rides HPA minReplicas %d, expected %d", *rides.Spec.MinReplicas, tc.ridesMinReplicas)
			}
		})
	}
}

// configFile is where a switchyard container's --config comes from: the
// ConfigMap key mounted at that path.
func configFile(t *testing.T, s *set, deployment string) (cm *corev1.ConfigMap, key, mountDir string) {
	t.Helper()
	deployment, container, _ := strings.Cut(deployment, "/") // DEPLOYMENT[/CONTAINER]
	d := s.byKey["Deployment/"+deployment].typed.(*appsv1.Deployment)
	c := d.Spec.Template.Spec.Containers[0]
	for _, x := range d.Spec.Template.Spec.Containers {
		if x.Name == container {
			c = x
		}
	}
	var path string
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			path = c.Args[i+1]
		}
	}
	if path == "" {
		t.Fatalf("%s: no --config argument in %q", deployment, c.Args)
	}
	for _, m := range c.VolumeMounts {
		if filepath.Dir(path) != m.MountPath {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cm := s.configMap(v.ConfigMap.Name)
				if cm == nil || cm.Data[filepath.Base(path)] == "" {
					t.Fatalf("%s: --config %s: ConfigMap %s has no key %s", deployment, path, v.ConfigMap.Name, filepath.Base(path))
				}
				return cm, filepath.Base(path), m.MountPath
			}
		}
	}
	t.Fatalf("%s: --config %s is not in a mounted ConfigMap", deployment, path)
	return nil, "", ""
}

// materialize writes cm's keys to a directory, as the kubelet mounts
// them at mountDir, and returns the config at key with mountDir pointing
// there. rewrite maps further strings (cluster addresses to loopback ones).
func materialize(t *testing.T, cm *corev1.ConfigMap, key, mountDir string, rewrite ...string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range cm.Data {
		if k == key {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := strings.ReplaceAll(cm.Data[key], mountDir+"/", dir+"/")
	cfg = strings.NewReplacer(rewrite...).Replace(cfg)
	path := filepath.Join(dir, key)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestGatewayConfigsLoad runs `switchyard gateway --check`'s code on the
// gateway's and the edge's config as mounted, and checks that every
// cluster address in them is a Service of the render with that port.
func TestGatewayConfigsLoad(t *testing.T) {
	for _, r := range renders {
		if r.dir == "datastores" {
			continue
		}
		t.Run(r.dir, func(t *testing.T) {
			setAdminTokens(t)
			s := mustRender(t, r.dir, r.externalSecrets...)
			for _, d := range []string{"gateway", "edge", "gateway/jwks-relay"} {
				cm, key, mount := configFile(t, s, d)
				path := materialize(t, cm, key, mount)
				if err := gateway.Check(path); err != nil {
					t.Errorf("%s: %s key %s: %v", d, cm.Name, key, err)
					continue
				}
				cfg, err := gateway.LoadConfig(path)
				if err != nil {
					t.Fatal(err)
				}
				// The pods listen where the container ports say.
				depName, _, _ := strings.Cut(d, "/")
				dep := s.byKey["Deployment/"+depName].typed.(*appsv1.Deployment)
				listens := []struct{ addr, port string }{{cfg.Listen, "http"}, {cfg.Admin, "admin"}}
				if d == "gateway/jwks-relay" {
					listens = []struct{ addr, port string }{{cfg.Listen, "jwks"}}
					if h, _, _ := net.SplitHostPort(cfg.Admin); h != "127.0.0.1" {
						t.Errorf("%s: admin %s: expected loopback (no admin_auth)", d, cfg.Admin)
					}
				}
				for _, l := range listens {
					_, p, err := net.SplitHostPort(l.addr)
					if err != nil {
						t.Fatalf("%s: listen %q: %v", d, l.addr, err)
					}
					found := false
					for _, c := range dep.Spec.Template.Spec.Containers {
						for _, cp := range c.Ports {
							if cp.Name == l.port && fmt.Sprint(cp.ContainerPort) == p {
								found = true
							}
						}
					}
					if !found {
						t.Errorf("%s: the config listens on %s but no container port %s is %s", d, l.addr, l.port, p)
					}
				}
				var refs []error
				if cfg.Discovery != nil {
					refs = append(refs, s.serviceFor(cfg.Discovery.Registry, "80"))
				}
				if cfg.Auth != nil && cfg.Auth.JWT != nil && cfg.Auth.JWT.JWKSURL != "" {
					// Loopback: the jwks-relay container of the same pod.
					u, err := url.Parse(cfg.Auth.JWT.JWKSURL)
					if err != nil || u.Hostname() != "127.0.0.1" || u.Port() != "9000" {
						t.Errorf("%s: jwks_url %s: expected the jwks-relay container at 127.0.0.1:9000", d, cfg.Auth.JWT.JWKSURL)
					}
				}
				if cfg.RateLimitStore != "" && r.datastores {
					refs = append(refs, s.serviceFor(cfg.RateLimitStore, "6379"))
				}
				for name, u := range cfg.Upstreams {
					for _, tg := range u.Targets {
						h, p, err := net.SplitHostPort(tg.Address)
						if err == nil {
							err = s.hostPort(h, p)
						}
						refs = append(refs, fmt.Errorf("upstream %s: %w", name, err))
						if err == nil {
							refs = refs[:len(refs)-1]
						}
					}
				}
				for _, err := range refs {
					if err != nil {
						t.Errorf("%s config: %v", d, err)
					}
				}
			}
		})
	}
}

// TestGatewayMatchesHitchUp holds the gateway's ConfigMap to the route
// table `switchyard hitch up` builds from hitch/svc's table of services:
// a service or route added there must be added here.
func TestGatewayMatchesHitchUp(t *testing.T) {
	setAdminTokens(t)
	s := mustRender(t, "base", "hitch-postgres", "switchyard-admin")
	cm, key, mount := configFile(t, s, "gateway")
	got, err := gateway.LoadConfig(materialize(t, cm, key, mount))
	if err != nil {
		t.Fatal(err)
	}
	// hitch up's defaults (hitch/up Options.defaults): 100/s per consumer,
	// 50/s per IP on public routes.
	want, err := up.GatewayConfig(up.Options{Specs: svc.Services(), ConsumerRate: "100/s", PublicRate: "50/s"},
		got.Discovery.Registry, got.Auth.JWT.JWKSURL, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Auth.JWT.Issuer != want.Auth.JWT.Issuer || !reflect.DeepEqual(got.Auth.JWT.Audience, want.Auth.JWT.Audience) ||
		!reflect.DeepEqual(got.Auth.JWT.Algorithms, want.Auth.JWT.Algorithms) {
		t.Errorf("JWT: issuer %q audience %v algorithms %v, hitch up has %q %v %v", got.Auth.JWT.Issuer, got.Auth.JWT.Audience,
			got.Auth.JWT.Algorithms, want.Auth.JWT.Issuer, want.Auth.JWT.Audience, want.Auth.JWT.Algorithms)
	}
	if !strings.HasSuffix(got.Auth.JWT.JWKSURL, "/.well-known/jwks.json") {
		t.Errorf("jwks_url %s: expected identity's JWKS path", got.Auth.JWT.JWKSURL)
	}
	for name, w := range want.Upstreams {
		g, ok := got.Upstreams[name]
		if !ok {
			t.Errorf("upstream %s: in hitch up's gateway, not in the ConfigMap", name)
			continue
		}
		if g.Discover != w.Discover || !reflect.DeepEqual(g.Retry, w.Retry) {
			t.Errorf("upstream %s: discover %q retry %+v, hitch up has %q %+v", name, g.Discover, g.Retry, w.Discover, w.Retry)
		}
	}
	for name := range got.Upstreams {
		if want.Upstreams[name] == nil {
			t.Errorf("upstream %s: not in hitch up's gateway", name)
		}
	}
	type route struct {
		Name, Upstream, Contract, Cache string
		Match                           gateway.Match
		Auth                            string
		Require                         any
		RateLimit                       any
	}
	flat := func(r gateway.Route) route {
		f := route{Name: r.Name, Upstream: r.Upstream, Contract: r.Contract, Match: r.Match, Auth: r.Auth.String(), RateLimit: r.RateLimit}
		if r.Cache != nil {
			f.Cache = r.Cache.Name
		}
		if r.Require != nil {
			f.Require = *r.Require
		}
		return f
	}
	if len(got.Routes) != len(want.Routes) {
		t.Errorf("%d routes, hitch up has %d", len(got.Routes), len(want.Routes))
	}
	for i := 0; i < len(got.Routes) && i < len(want.Routes); i++ {
		if g, w := flat(got.Routes[i]), flat(want.Routes[i]); !reflect.DeepEqual(g, w) {
			t.Errorf("route %d:\n got %+v\nwant %+v (hitch up)", i, g, w)
		}
	}
	if want.Contracts[up.HitchContract] == nil || got.Contracts[up.HitchContract] == nil {
		t.Fatalf("contract %s: in hitch up %v, in the ConfigMap %v", up.HitchContract, want.Contracts != nil, got.Contracts != nil)
	}
	if g, w := got.Contracts[up.HitchContract], want.Contracts[up.HitchContract]; g.ServeAt != w.ServeAt || g.Responses != w.Responses {
		t.Errorf("contract: serve_at %q responses %q, hitch up has %q %q", g.ServeAt, g.Responses, w.ServeAt, w.Responses)
	}
	if doc := cm.Data["hitch-openapi.yaml"]; doc != string(hitch.OpenAPI()) {
		t.Errorf("ConfigMap %s key hitch-openapi.yaml differs from hitch/openapi.yaml: copy it again", cm.Name)
	}
}

// TestHitchServicesMatchTable holds the StatefulSets to hitch/svc's table
// and to the arguments `hitch up` gives each child (hitch/up/up.go), and
// checks the resolved arguments with hitch serve's own validation.
func TestHitchServicesMatchTable(t *testing.T) {
	s := mustRender(t, "overlays/single-node")
	env := s.configMap("hitch-env")
	if env == nil {
		t.Fatal("no ConfigMap hitch-env")
	}
	if bus := env.Data["bus-url"]; !strings.HasPrefix(bus, "nats://") {
		t.Errorf("hitch-env bus-url %q: Hitch runs on NATS JetStream here (nats://)", bus)
	}
	for _, k := range []string{"registry-url", "bus-url", "redis-url"} {
		def := map[string]string{"registry-url": "80", "bus-url": "4222", "redis-url": "6379"}[k]
		if err := s.serviceFor(env.Data[k], def); err != nil {
			t.Errorf("hitch-env %s: %v", k, err)
		}
	}
	specs := svc.Services()
	seen := map[string]bool{}
	for _, spec := range specs {
		if spec.New == nil {
			continue
		}
		seen[spec.Name] = true
		o := s.byKey["StatefulSet/"+spec.Name]
		if o == nil {
			t.Errorf("service %s (hitch/svc.Services) has no StatefulSet", spec.Name)
			continue
		}
		sts := o.typed.(*appsv1.StatefulSet)
		_, hasHPA := s.byKey["HorizontalPodAutoscaler/"+spec.Name]
		_, hasPDB := s.byKey["PodDisruptionBudget/"+spec.Name]
		if spec.Replicated && (*sts.Spec.Replicas < 2 || !hasHPA || !hasPDB) {
			t.Errorf("%s is replicated: expected 2+ replicas (%d), an HPA (%v) and a PDB (%v)", spec.Name, *sts.Spec.Replicas, hasHPA, hasPDB)
		}
		if !spec.Replicated && (*sts.Spec.Replicas != 1 || hasHPA) {
			t.Errorf("%s runs as one process (hitch up starts one): expected 1 replica (%d) and no HPA (%v)", spec.Name, *sts.Spec.Replicas, hasHPA)
		}
		c := sts.Spec.Template.Spec.Containers[0]
		vars := map[string]string{"POD_IP": "10.1.2.3", "HITCH_REPLICA": "1"}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom == nil:
				vars[e.Name] = e.Value
			case e.ValueFrom.ConfigMapKeyRef != nil:
				vars[e.Name] = s.configMap(e.ValueFrom.ConfigMapKeyRef.Name).Data[e.ValueFrom.ConfigMapKeyRef.Key]
			case e.ValueFrom.SecretKeyRef != nil:
				vars[e.Name], _ = secretValue(s.secret(e.ValueFrom.SecretKeyRef.Name), e.ValueFrom.SecretKeyRef.Key)
			}
		}
		args := make([]string, len(c.Args))
		for i, a := range c.Args {
			args[i] = varRef.ReplaceAllStringFunc(a, func(m string) string { return vars[m[2:len(m)-1]] })
		}
		if len(args) < 3 || args[0] != "hitch" || args[1] != "serve" || args[2] != spec.Name {
			t.Errorf("%s: args %q: expected hitch serve %s ...", spec.Name, c.Args, spec.Name)
			continue
		}
		// The flags hitch up passes (hitch/up/up.go), each once.
		flags := map[string]string{}
		rest := args[3:]
		for len(rest) > 0 {
			if len(rest) < 2 || !strings.HasPrefix(rest[0], "--") {
				t.Errorf("%s: args %q: expected --flag value pairs", spec.Name, args[3:])
				break
			}
			if _, dup := flags[rest[0]]; dup {
				t.Errorf("%s: %s twice", spec.Name, rest[0])
			}
			flags[rest[0]], rest = rest[1], rest[2:]
		}
		wantFlags := []string{"--replica", "--listen", "--data", "--registry", "--store", "--redis"}
		if spec.Bus {
			wantFlags = append(wantFlags, "--bus")
		}
		for _, f := range wantFlags {
			if _, ok := flags[f]; !ok {
				t.Errorf("%s: no %s (hitch up passes it)", spec.Name, f)
			}
		}
		if _, ok := flags["--bus"]; ok && !spec.Bus {
			t.Errorf("%s: --bus given, but the service does not use the bus", spec.Name)
		}
		if len(flags) != len(wantFlags) {
			t.Errorf("%s: flags %v: expected exactly %v", spec.Name, flags, wantFlags)
		}
		o2 := svc.Options{Name: spec.Name, Listen: flags["--listen"], Data: flags["--data"], Registry: flags["--registry"],
			Bus: flags["--bus"], Store: flags["--store"], Redis: flags["--redis"]}
		if _, err := fmt.Sscan(flags["--replica"], &o2.Replica); err != nil {
			t.Errorf("%s: --replica %q: %v", spec.Name, flags["--replica"], err)
		}
		if err := o2.Validate(specs); err != nil {
			t.Errorf("%s: hitch serve would refuse its arguments: %v", spec.Name, err)
		}
		if h, p, err := net.SplitHostPort(o2.Listen); err != nil || h != vars["POD_IP"] || p != fmt.Sprint(c.Ports[0].ContainerPort) {
			t.Errorf("%s: --listen %q: expected the pod IP and the container port %d (the address it registers)", spec.Name, o2.Listen, c.Ports[0].ContainerPort)
		}
		if err := s.serviceFor(o2.Store, "5432"); err != nil {
			t.Errorf("%s: --store: %v", spec.Name, err)
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath == o2.Data {
				goto dataOK
			}
		}
		t.Errorf("%s: --data %s is not a mounted volume (the root filesystem is read-only)", spec.Name, o2.Data)
	dataOK:
	}
	for _, o := range s.objs {
		if sts, ok := o.typed.(*appsv1.StatefulSet); ok && sts.Spec.Template.Labels["app.kubernetes.io/part-of"] == "hitch" && !seen[o.name] {
			t.Errorf("%s: not a service of hitch/svc.Services", o.key())
		}
	}
}

// TestDocsNameExternalSecrets: a Secret a render expects the operator to
// create is created by a command in docs/kubernetes.md.
func TestDocsNameExternalSecrets(t *testing.T) {
	doc, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range renders {
		for _, name := range r.externalSecrets {
			if !bytes.Contains(doc, []byte("kubectl -n hitch create secret generic "+name)) {
				t.Errorf("%s expects Secret %s: docs/kubernetes.md must show how to create it", r.dir, name)
			}
		}
	}
}

// TestProbesHitRealEndpoints starts the components the probes point at
// and asks each probe's endpoint: the gateway (the edge's config, its
// origin a loopback server), the registry, and a Hitch service through
// hitch serve's own runtime listening on a bracketed address as the
// StatefulSets pass it. It also checks the HPA's requests-per-second
// metric is the rate of a counter the gateway really exports.
func TestProbesHitRealEndpoints(t *testing.T) {
	setAdminTokens(t)
	s := mustRender(t, "overlays/single-node")
	probes := func(name string) map[string]string { // port name -> path
		t.Helper()
		out := map[string]string{}
		for _, w := range s.workloads() {
			if w.o.name != name {
				continue
			}
			for _, c := range w.pod.Spec.Containers {
				for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
					if p != nil && p.HTTPGet != nil {
						out[p.HTTPGet.Port.String()] = p.HTTPGet.Path
					}
				}
			}
		}
		if len(out) == 0 {
			t.Fatalf("%s: no HTTP probes", name)
		}
		return out
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// The edge gateway, its origin a loopback server.
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "origin\n")
	}))
	defer origin.Close()
	cm, key, mount := configFile(t, s, "edge")
	cfg, err := gateway.LoadConfig(materialize(t, cm, key, mount, "gateway:8080", origin.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	gw, err := gateway.New(gateway.Options{Config: cfg, ConfigPath: "edge-config (test)", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	gwDone := make(chan error, 1)
	go func() { gwDone <- gw.Run(ctx) }()
	select {
	case <-gw.Ready():
	case err := <-gwDone:
		t.Fatalf("edge gateway: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("edge gateway not ready within 10s")
	}
	ports := map[string]string{"http": gw.Addr().String(), "admin": gw.AdminAddr().String()}
	for port, path := range probes("edge") {
		if code, body := get("http://" + ports[port] + path); code != http.StatusOK {
			t.Errorf("edge probe %s%s: %d %q", port, path, code, body)
		}
	}
	if code, body := get("http://" + ports["http"] + "/"); code != http.StatusOK || body != "origin\n" {
		t.Errorf("GET / through the edge: %d %q", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+ports["admin"]+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+os.Getenv("SY_METRICS_TOKEN"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics with the metrics token: %d %s", resp.StatusCode, mb)
	}
	metrics := string(mb)
	for _, name := range []string{"gateway", "edge"} {
		hpa := s.byKey["HorizontalPodAutoscaler/"+name].typed.(*autoscalingv2.HorizontalPodAutoscaler)
		for _, m := range hpa.Spec.Metrics {
			if m.Type != autoscalingv2.PodsMetricSourceType {
				continue
			}
			// The Prometheus adapter rule of docs/kubernetes.md serves
			// rate(NAME_total) as NAME.
			counter := m.Pods.Metric.Name + "_total"
			if counter != proxy.RequestsMetric || !strings.Contains(metrics, "\n"+counter+"{") {
				t.Errorf("HPA %s: metric %s: the gateway's /metrics has no counter %s (its requests counter is %s)", name, m.Pods.Metric.Name, counter, proxy.RequestsMetric)
			}
		}
	}

	// The registry, as `switchyard registry` serves it.
	reg, err := registry.Open(registry.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	regSrv := httptest.NewServer(registry.Handler(reg))
	defer regSrv.Close()
	for port, path := range probes("registry") {
		if code, body := get(regSrv.URL + path); code != http.StatusOK {
			t.Errorf("registry probe %s%s: %d %q", port, path, code, body)
		}
	}

	// A Hitch service (web: no database beyond SQLite, no bus) through
	// hitch serve's runtime, listening as the StatefulSets say
	// ("[POD_IP]:8080", here on loopback and port 0).
	ready := make(chan string, 1)
	svcCtx, stopSvc := context.WithCancel(ctx)
	svcDone := make(chan error, 1)
	go func() {
		svcDone <- svc.Serve(svcCtx, svc.Services(), svc.Options{Name: svc.Web, Data: t.TempDir(), Registry: regSrv.URL,
			Listen: "[127.0.0.1]:0", Logger: slog.New(slog.DiscardHandler), Stdout: io.Discard, Ready: func(a string) { ready <- a }})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-svcDone:
		t.Fatalf("hitch serve web: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("hitch serve web: not ready within 30s")
	}
	if h, _, err := net.SplitHostPort(addr); err != nil || h != "127.0.0.1" {
		t.Errorf("hitch serve --listen [127.0.0.1]:0 registered %q: expected 127.0.0.1:PORT", addr)
	}
	for port, path := range probes("web") {
		if code, body := get("http://" + addr + path); code != http.StatusOK {
			t.Errorf("web probe %s%s: %d %q", port, path, code, body)
		}
	}
	stopSvc()
	if err := <-svcDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("hitch serve web stopped with %v", err)
	}
	cancel()
	<-gwDone
}

// TestRenderMatchesKustomize compares this test's rendering with the real
// kustomize (kubectl kustomize) where kubectl is installed: the checks
// above are only as good as the rendering they run on.
func TestRenderMatchesKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the rendering is not compared with kustomize's")
	}
	for _, r := range renders {
		t.Run(r.dir, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, kubectl, "kustomize", r.dir).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", r.dir, err)
			}
			theirs := map[string]any{}
			for i, doc := range splitDocs(out) {
				var m map[string]any
				if err := yaml.Unmarshal(doc, &m); err != nil {
					t.Fatalf("kustomize's document %d: %v", i+1, err)
				}
				md, _ := m["metadata"].(map[string]any)
				theirs[fmt.Sprintf("%v/%v", m["kind"], md["name"])] = m
			}
			objs, err := render(r.dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != len(theirs) {
				t.Errorf("%d objects, kustomize renders %d", len(objs), len(theirs))
			}
			for _, o := range objs {
				js, _ := json.Marshal(o.raw)
				var ours any
				_ = json.Unmarshal(js, &ours) // the same number types as theirs
				if !reflect.DeepEqual(ours, theirs[o.key()]) {
					a, _ := json.MarshalIndent(ours, "", " ")
					b, _ := json.MarshalIndent(theirs[o.key()], "", " ")
					t.Errorf("%s differs from kustomize's:\nours:   %s\ntheirs: %s", o.key(), a, b)
				}
			}
		})
	}
}

// setAdminTokens sets the admin tokens the gateway configs read from the
// environment (env:SY_...), as the Secret switchyard-admin does in a pod.
func setAdminTokens(t *testing.T) {
	t.Setenv("SY_ADMIN_TOKEN", "test-operator-token-0123456789abcdef")
	t.Setenv("SY_METRICS_TOKEN", "test-metrics-token-0123456789abcdef")
}

// TestChecksCatchBreakage breaks a good render in the ways the checks are
// for and expects each to be reported.
func TestChecksCatchBreakage(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		breakIt    func(s *set)
	}{
		{"service targetPort", "targetPort nope is not a container port", func(s *set) {
			s.byKey["Service/gateway"].typed.(*corev1.Service).Spec.Ports[0].TargetPort = intstrFrom("nope")
		}},
		{"configmap key", "ConfigMap hitch-env has no key bus-url", func(s *set) {
			delete(s.configMap("hitch-env").Data, "bus-url")
		}},
		{"hpa target", "scaleTargetRef apps/v1 Deployment/gatewya: no such object", func(s *set) {
			s.byKey["HorizontalPodAutoscaler/gateway"].typed.(*autoscalingv2.HorizontalPodAutoscaler).Spec.ScaleTargetRef.Name = "gatewya"
		}},
		{"probe port", "readinessProbe: port metrics is not declared", func(s *set) {
			s.byKey["StatefulSet/rides"].typed.(*appsv1.StatefulSet).Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstrFrom("metrics")
		}},
		{"secret", "no Secret hitch-postgres", func(s *set) {
			delete(s.byKey, "Secret/hitch-postgres")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustRender(t, "overlays/single-node")
			if errs := s.check(); len(errs) != 0 {
				t.Fatalf("the render is not clean before breaking it: %v", errs)
			}
			tc.breakIt(s)
			errs := strings.Join(s.check(), "\n")
			if !strings.Contains(errs, tc.want) {
				t.Errorf("expected an error containing %q, got:\n%s", tc.want, errs)
			}
		})
	}
	var d appsv1.Deployment
	if err := strictJSON([]byte(`{"spec":{"replcas":2}}`), &d); err == nil {
		t.Error("an unknown field decoded without error")
	}
	if err := applyOp(map[string]any{"spec": map[string]any{}}, map[string]any{"op": "replace", "path": "/spec/replicas", "value": 1}); err == nil {
		t.Error("replace of a missing path succeeded")
	}
}

func intstrFrom(s string) intstr.IntOrString { return intstr.FromString(s) }
