package kubernetes

// Cross-references of a rendered set: what a cluster would only reveal
// at run time (a Service selecting nothing, a probe on an undeclared
// port, a missing ConfigMap key leaving a pod in CreateContainerConfigError,
// an autoscaler on a missing target).

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// set is a decoded render, indexed.
type set struct {
	objs     []*object
	byKey    map[string]*object
	external map[string]bool // Secrets the operator creates (not in the render)
}

func newSet(objs []*object, externalSecrets ...string) *set {
	s := &set{objs: objs, byKey: map[string]*object{}, external: map[string]bool{}}
	for _, o := range objs {
		s.byKey[o.key()] = o
	}
	for _, n := range externalSecrets {
		s.external[n] = true
	}
	return s
}

// workload is a Deployment or StatefulSet seen through what the checks need.
type workload struct {
	o        *object
	replicas int32
	selector *metav1.LabelSelector
	pod      *corev1.PodTemplateSpec
	claims   []corev1.PersistentVolumeClaim
}

func (s *set) workloads() []workload {
	var ws []workload
	for _, o := range s.objs {
		switch t := o.typed.(type) {
		case *appsv1.Deployment:
			ws = append(ws, workload{o, replicasOf(t.Spec.Replicas), t.Spec.Selector, &t.Spec.Template, nil})
		case *appsv1.StatefulSet:
			ws = append(ws, workload{o, replicasOf(t.Spec.Replicas), t.Spec.Selector, &t.Spec.Template, t.Spec.VolumeClaimTemplates})
		}
	}
	return ws
}

func replicasOf(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func (s *set) configMap(name string) *corev1.ConfigMap {
	if o := s.byKey["ConfigMap/"+name]; o != nil {
		return o.typed.(*corev1.ConfigMap)
	}
	return nil
}

func (s *set) secret(name string) *corev1.Secret {
	if o := s.byKey["Secret/"+name]; o != nil {
		return o.typed.(*corev1.Secret)
	}
	return nil
}

// secretValue is key of Secret name, from data or stringData.
func secretValue(sec *corev1.Secret, key string) (string, bool) {
	if v, ok := sec.StringData[key]; ok {
		return v, true
	}
	v, ok := sec.Data[key]
	return string(v), ok
}

// matching returns the workloads whose pod labels sel selects.
func (s *set) matching(sel labels.Selector) []workload {
	var ws []workload
	for _, w := range s.workloads() {
		if sel.Matches(labels.Set(w.pod.Labels)) {
			ws = append(ws, w)
		}
	}
	return ws
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// check reports every broken cross-reference in s.
func (s *set) check() []string {
	var errs []string
	fail := func(o *object, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s (%s): %s", o.key(), o.file, fmt.Sprintf(format, args...)))
	}
	namespaces := map[string]bool{}
	for _, o := range s.objs {
		if o.kind == "Namespace" {
			namespaces[o.name] = true
		}
	}
	for _, o := range s.objs {
		if o.kind != "Namespace" && o.namespace != "" && len(namespaces) > 0 && !namespaces[o.namespace] {
			fail(o, "namespace %q is not created by this render", o.namespace)
		}
	}

	for _, w := range s.workloads() {
		o := w.o
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || w.selector == nil || sel.Empty() {
			fail(o, "selector %v: expected a non-empty label selector (%v)", w.selector, err)
			continue
		}
		if !sel.Matches(labels.Set(w.pod.Labels)) {
			fail(o, "selector %s does not select its own pod template's labels %v", sel, w.pod.Labels)
		}
		for _, other := range s.workloads() {
			if other.o != o && sel.Matches(labels.Set(other.pod.Labels)) {
				fail(o, "selector %s also selects %s's pods", sel, other.o.key())
			}
		}
		if sts, ok := o.typed.(*appsv1.StatefulSet); ok {
			if svc := s.byKey["Service/"+sts.Spec.ServiceName]; svc == nil {
				fail(o, "serviceName %q: no such Service", sts.Spec.ServiceName)
			}
		}
		errs = append(errs, s.checkPod(o, w)...)
	}

	for _, o := range s.objs {
		switch t := o.typed.(type) {
		case *corev1.Service:
			if len(t.Spec.Selector) == 0 {
				fail(o, "no selector")
				continue
			}
			ws := s.matching(labels.SelectorFromSet(t.Spec.Selector))
			if len(ws) == 0 {
				fail(o, "selector %v selects no pod template", t.Spec.Selector)
			}
			for _, p := range t.Spec.Ports {
				for _, w := range ws {
					if !podHasPort(w.pod, p.TargetPort, p.Protocol) {
						fail(o, "port %s: targetPort %s is not a container port of %s", p.Name, p.TargetPort.String(), w.o.key())
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsSelector(t.Spec.Selector)
			if err != nil || sel.Empty() {
				fail(o, "selector: expected a non-empty label selector (%v)", err)
				continue
			}
			ws := s.matching(sel)
			if len(ws) != 1 {
				fail(o, "selector %s selects %d workloads: expected exactly one", sel, len(ws))
				continue
			}
			r := ws[0].replicas
			if t.Spec.MinAvailable != nil && t.Spec.MinAvailable.Type == intstr.Int && int32(t.Spec.MinAvailable.IntValue()) >= r {
				fail(o, "minAvailable %d with %d replicas of %s: no pod could ever be evicted (node drains would hang)", t.Spec.MinAvailable.IntValue(), r, ws[0].o.key())
			}
			if t.Spec.MinAvailable != nil && t.Spec.MaxUnavailable != nil {
				fail(o, "both minAvailable and maxUnavailable")
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := t.Spec.ScaleTargetRef
			target := s.byKey[ref.Kind+"/"+ref.Name]
			if target == nil || target.apiVersion != ref.APIVersion {
				fail(o, "scaleTargetRef %s %s/%s: no such object", ref.APIVersion, ref.Kind, ref.Name)
				continue
			}
			if t.Spec.MinReplicas == nil || *t.Spec.MinReplicas < 1 || *t.Spec.MinReplicas > t.Spec.MaxReplicas {
				fail(o, "minReplicas %v, maxReplicas %d: expected 1 <= min <= max", t.Spec.MinReplicas, t.Spec.MaxReplicas)
				continue
			}
			var w *workload
			for _, x := range s.workloads() {
				if x.o == target {
					w = &x
				}
			}
			if w.replicas != *t.Spec.MinReplicas {
				fail(o, "minReplicas %d but %s asks for %d replicas: the first autoscaler pass would change it", *t.Spec.MinReplicas, target.key(), w.replicas)
			}
			if len(t.Spec.Metrics) == 0 {
				fail(o, "no metrics")
			}
			for _, m := range t.Spec.Metrics {
				if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
					for _, c := range w.pod.Spec.Containers {
						if _, ok := c.Resources.Requests[m.Resource.Name]; !ok {
							fail(o, "%s utilization of %s: container %s requests no %s (utilization is of the request)", m.Resource.Name, target.key(), c.Name, m.Resource.Name)
						}
					}
				}
			}
		}
	}
	sort.Strings(errs)
	return errs
}

// podHasPort reports whether a container of pod declares port (by name or
// number) with protocol.
func podHasPort(pod *corev1.PodTemplateSpec, port intstr.IntOrString, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, c := range pod.Spec.Containers {
		if containerHasPort(c, port, proto) {
			return true
		}
	}
	return false
}

func containerHasPort(c corev1.Container, port intstr.IntOrString, proto corev1.Protocol) bool {
	for _, p := range c.Ports {
		pp := p.Protocol
		if pp == "" {
			pp = corev1.ProtocolTCP
		}
		if pp != proto {
			continue
		}
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

// checkPod checks one workload's pod template: probes, env and volume
// references, resources, security context.
func (s *set) checkPod(o *object, w workload) []string {
	var errs []string
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s (%s): %s", o.key(), o.file, fmt.Sprintf(format, args...)))
	}
	spec := w.pod.Spec
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			cm := s.configMap(v.ConfigMap.Name)
			if cm == nil {
				fail("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
			for _, it := range v.ConfigMap.Items {
				if cm != nil && cm.Data[it.Key] == "" {
					fail("volume %s: ConfigMap %s has no key %s", v.Name, v.ConfigMap.Name, it.Key)
				}
			}
		}
		if v.Secret != nil && s.secret(v.Secret.SecretName) == nil && !s.external[v.Secret.SecretName] {
			fail("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
		}
	}
	for _, c := range w.claims {
		volumes[c.Name] = true
	}
	podSC := spec.SecurityContext
	if podSC == nil || podSC.RunAsNonRoot == nil || !*podSC.RunAsNonRoot || podSC.RunAsUser == nil || *podSC.RunAsUser == 0 {
		fail("pod securityContext: expected runAsNonRoot: true and a non-zero runAsUser")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		fail("automountServiceAccountToken: expected false (nothing here talks to the Kubernetes API)")
	}
	for _, c := range spec.Containers {
		cf := func(format string, args ...any) { fail("container %s: "+format, append([]any{c.Name}, args...)...) }
		if c.Image == "" {
			cf("no image")
		}
		names := map[string]bool{}
		for _, p := range c.Ports {
			if p.Name == "" {
				cf("port %d has no name (Services and probes refer to ports by name)", p.ContainerPort)
			}
			if names[p.Name] {
				cf("port name %s twice", p.Name)
			}
			names[p.Name] = true
		}
		for _, pr := range []struct {
			what string
			p    *corev1.Probe
		}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}, {"startupProbe", c.StartupProbe}} {
			p := pr.p
			if p == nil {
				if pr.what != "startupProbe" {
					cf("no %s", pr.what)
				}
				continue
			}
			switch {
			case p.HTTPGet != nil:
				if !containerHasPort(c, p.HTTPGet.Port, corev1.ProtocolTCP) {
					cf("%s: port %s is not declared", pr.what, p.HTTPGet.Port.String())
				}
				if !strings.HasPrefix(p.HTTPGet.Path, "/") {
					cf("%s: path %q: expected an absolute path", pr.what, p.HTTPGet.Path)
				}
			case p.TCPSocket != nil:
				if !containerHasPort(c, p.TCPSocket.Port, corev1.ProtocolTCP) {
					cf("%s: port %s is not declared", pr.what, p.TCPSocket.Port.String())
				}
			case p.Exec != nil:
				if len(p.Exec.Command) == 0 {
					cf("%s: empty command", pr.what)
				}
			default:
				cf("%s: no handler", pr.what)
			}
		}
		env := map[string]bool{}
		for _, e := range c.Env {
			// $(VAR) in env values sees only the variables before it.
			for _, m := range varRef.FindAllStringSubmatch(e.Value, -1) {
				if !env[m[1]] {
					cf("env %s: $(%s) is not defined before it (Kubernetes would leave it as written)", e.Name, m[1])
				}
			}
			env[e.Name] = true
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				cm := s.configMap(r.Name)
				if cm == nil {
					cf("env %s: no ConfigMap %s", e.Name, r.Name)
				} else if _, ok := cm.Data[r.Key]; !ok {
					cf("env %s: ConfigMap %s has no key %s", e.Name, r.Name, r.Key)
				}
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				sec := s.secret(r.Name)
				switch {
				case sec == nil && !s.external[r.Name]:
					cf("env %s: no Secret %s", e.Name, r.Name)
				case sec != nil:
					if _, ok := secretValue(sec, r.Key); !ok {
						cf("env %s: Secret %s has no key %s", e.Name, r.Name, r.Key)
					}
				}
			}
			if r := e.ValueFrom.FieldRef; r != nil {
				if !validFieldPath(r.FieldPath, w.o.kind) {
					cf("env %s: fieldRef %q is not one the downward API serves here", e.Name, r.FieldPath)
				}
			}
		}
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			for _, m := range varRef.FindAllStringSubmatch(a, -1) {
				if !env[m[1]] {
					cf("argument %q: $(%s) is not an env variable of the container (Kubernetes would pass it as written)", a, m[1])
				}
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				cf("volumeMount %s: no such volume", m.Name)
			}
		}
		if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
			cf("no cpu request")
		}
		mem, ok := c.Resources.Requests[corev1.ResourceMemory]
		lim, lok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || !lok {
			cf("expected a memory request and a memory limit")
		} else if lim.Cmp(mem) < 0 {
			cf("memory limit %s below its request %s", lim.String(), mem.String())
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
			len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			cf("securityContext: expected allowPrivilegeEscalation: false and capabilities drop [ALL]")
		}
		if isSwitchyard(c.Image) {
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				cf("securityContext: switchyard writes only to its volumes: expected readOnlyRootFilesystem: true")
			}
			if c.LivenessProbe != nil && c.LivenessProbe.Exec != nil || c.ReadinessProbe != nil && c.ReadinessProbe.Exec != nil {
				cf("exec probe: the switchyard image (distroless) has no shell or tools")
			}
		}
	}
	return errs
}

// validFieldPath reports whether the downward API serves path to env.
func validFieldPath(path, ownerKind string) bool {
	switch path {
	case "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
		"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs":
		return true
	}
	// The pod index label exists on StatefulSet pods only (Kubernetes 1.28+).
	if path == "metadata.labels['apps.kubernetes.io/pod-index']" {
		return ownerKind == "StatefulSet"
	}
	return strings.HasPrefix(path, "metadata.labels['") || strings.HasPrefix(path, "metadata.annotations['")
}

func isSwitchyard(image string) bool {
	base, _, _ := strings.Cut(image, ":")
	return base == "switchyard" || strings.HasSuffix(base, "/switchyard")
}

// serviceFor checks that rawURL's host:port is a Service of s with that
// port (a URL the pods dial inside the cluster).
func (s *set) serviceFor(rawURL, defaultPort string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("URL %q: %v", rawURL, err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = defaultPort
	}
	return s.hostPort(host, port)
}

func (s *set) hostPort(host, port string) error {
	name, _, _ := strings.Cut(host, ".") // NAME or NAME.NAMESPACE.svc...
	o := s.byKey["Service/"+name]
	if o == nil {
		return fmt.Errorf("%s:%s: no Service %s", host, port, name)
	}
	for _, p := range o.typed.(*corev1.Service).Spec.Ports {
		if fmt.Sprint(p.Port) == port {
			return nil
		}
	}
	return fmt.Errorf("%s:%s: Service %s has no port %s", host, port, name, port)
}
