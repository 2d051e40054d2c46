package kubernetes

// Rendering: what `kubectl apply -k DIR` sends, computed here without
// kustomize for the subset these manifests use (resources, namespace,
// images, JSON 6902 patches); anything else in a kustomization.yaml is an
// unknown field and fails the strict decode.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
	Patches []struct {
		Target struct {
			Group   string `json:"group,omitempty"`
			Version string `json:"version"`
			Kind    string `json:"kind"`
			Name    string `json:"name"`
		} `json:"target"`
		Patch string `json:"patch"`
	} `json:"patches,omitempty"`
}

// object is one rendered manifest: where it came from, its generic form
// (patched) and, after decode, its typed form.
type object struct {
	file       string // file:document number
	apiVersion string
	kind       string
	name       string
	namespace  string
	raw        map[string]any
	typed      any
}

func (o *object) key() string { return o.kind + "/" + o.name }

// kinds maps each kind the manifests may use to its apiVersion and typed
// form; any other kind is an error.
var kinds = map[string]struct {
	apiVersion string
	new        func() any
}{
	"Namespace":               {"v1", func() any { return &corev1.Namespace{} }},
	"ConfigMap":               {"v1", func() any { return &corev1.ConfigMap{} }},
	"Secret":                  {"v1", func() any { return &corev1.Secret{} }},
	"Service":                 {"v1", func() any { return &corev1.Service{} }},
	"Deployment":              {"apps/v1", func() any { return &appsv1.Deployment{} }},
	"StatefulSet":             {"apps/v1", func() any { return &appsv1.StatefulSet{} }},
	"PodDisruptionBudget":     {"policy/v1", func() any { return &policyv1.PodDisruptionBudget{} }},
	"HorizontalPodAutoscaler": {"autoscaling/v2", func() any { return &autoscalingv2.HorizontalPodAutoscaler{} }},
}

// strictJSON decodes data into v, refusing unknown fields and trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits a multi-document YAML file, dropping documents that
// hold only comments and blank lines.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSep.Split(string(data), -1) {
		empty := true
		for _, l := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// readKustomization strictly decodes dir/kustomization.yaml and checks
// that it lists every YAML file beside it and nothing that is missing.
func readKustomization(dir string) (*kustomization, error) {
	path := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion %q kind %q: expected kustomize.config.k8s.io/v1beta1 Kustomization", path, k.APIVersion, k.Kind)
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		if listed[r] {
			return nil, fmt.Errorf("%s: resource %s listed twice", path, r)
		}
		listed[r] = true
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			return nil, fmt.Errorf("%s: resource %s: %v", path, r, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !listed[b] {
			return nil, fmt.Errorf("%s: %s is in the directory but not in resources: kubectl apply -k would leave it out", path, b)
		}
	}
	return &k, nil
}

// render builds what kustomize builds for dir.
func render(dir string) ([]*object, error) {
	k, err := readKustomization(dir)
	if err != nil {
		return nil, err
	}
	var objs []*object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			sub, err := render(p)
			if err != nil {
				return nil, err
			}
			objs = append(objs, sub...)
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		for i, doc := range splitDocs(data) {
			js, err := yaml.YAMLToJSONStrict(doc) // duplicate keys are errors
			if err != nil {
				return nil, fmt.Errorf("%s document %d: %v", p, i+1, err)
			}
			var raw map[string]any
			if err := json.Unmarshal(js, &raw); err != nil {
				return nil, fmt.Errorf("%s document %d: %v", p, i+1, err)
			}
			o := &object{file: fmt.Sprintf("%s#%d", p, i+1), raw: raw}
			o.apiVersion, _ = raw["apiVersion"].(string)
			o.kind, _ = raw["kind"].(string)
			if md, ok := raw["metadata"].(map[string]any); ok {
				o.name, _ = md["name"].(string)
				o.namespace, _ = md["namespace"].(string)
			}
			if o.name == "" {
				return nil, fmt.Errorf("%s: no metadata.name", o.file)
			}
			objs = append(objs, o)
		}
	}
	// Patches, then namespace and images, as kustomize orders them.
	for i, p := range k.Patches {
		var target *object
		for _, o := range objs {
			group, version, _ := strings.Cut(o.apiVersion, "/")
			if version == "" {
				group, version = "", group
			}
			if o.kind == p.Target.Kind && o.name == p.Target.Name && group == p.Target.Group && version == p.Target.Version {
				if target != nil {
					return nil, fmt.Errorf("%s: patches[%d] matches two objects", dir, i)
				}
				target = o
			}
		}
		if target == nil {
			return nil, fmt.Errorf("%s: patches[%d]: no %s/%s %s %s to patch", dir, i, p.Target.Group, p.Target.Version, p.Target.Kind, p.Target.Name)
		}
		var ops []map[string]any
		if err := yaml.UnmarshalStrict([]byte(p.Patch), &ops); err != nil {
			return nil, fmt.Errorf("%s: patches[%d]: %v", dir, i, err)
		}
		for j, op := range ops {
			if err := applyOp(target.raw, op); err != nil {
				return nil, fmt.Errorf("%s: patches[%d] op %d on %s: %v", dir, i, j, target.key(), err)
			}
		}
	}
	for _, o := range objs {
		if k.Namespace != "" && o.kind != "Namespace" {
			o.namespace = k.Namespace
			o.raw["metadata"].(map[string]any)["namespace"] = k.Namespace
		}
		for _, img := range k.Images {
			setImages(o.raw, img.Name, img.NewName, img.NewTag)
		}
	}
	return objs, nil
}

// applyOp applies one JSON 6902 operation (add, replace, remove) to doc.
// replace and remove need the path to exist, as RFC 6902 says; add needs
// its parent.
func applyOp(doc map[string]any, op map[string]any) error {
	kind, _ := op["op"].(string)
	path, _ := op["path"].(string)
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("path %q: expected a JSON pointer starting with /", path)
	}
	for k := range op {
		if k != "op" && k != "path" && k != "value" {
			return fmt.Errorf("unknown key %q", k)
		}
	}
	value, hasValue := op["value"]
	if (kind == "add" || kind == "replace") && !hasValue {
		return fmt.Errorf("%s %s: no value", kind, path)
	}
	tokens := strings.Split(path[1:], "/")
	for i := range tokens {
		tokens[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(tokens[i])
	}
	var parent any = doc
	for _, t := range tokens[:len(tokens)-1] {
		switch p := parent.(type) {
		case map[string]any:
			next, ok := p[t]
			if !ok {
				return fmt.Errorf("%s: %q does not exist", path, t)
			}
			parent = next
		case []any:
			n, err := strconv.Atoi(t)
			if err != nil || n < 0 || n >= len(p) {
				return fmt.Errorf("%s: index %q out of range", path, t)
			}
			parent = p[n]
		default:
			return fmt.Errorf("%s: %q is not inside an object or array", path, t)
		}
	}
	last := tokens[len(tokens)-1]
	switch p := parent.(type) {
	case map[string]any:
		_, exists := p[last]
		switch kind {
		case "add":
			p[last] = value
		case "replace":
			if !exists {
				return fmt.Errorf("replace %s: nothing there", path)
			}
			p[last] = value
		case "remove":
			if !exists {
				return fmt.Errorf("remove %s: nothing there", path)
			}
			delete(p, last)
		default:
			return fmt.Errorf("op %q: expected add, replace or remove", kind)
		}
	case []any:
		n, err := strconv.Atoi(last)
		if err != nil || n < 0 || n >= len(p) {
			return fmt.Errorf("%s: index %q out of range (arrays are only replaced in place here)", path, last)
		}
		if kind != "replace" {
			return fmt.Errorf("op %q on an array element: only replace is supported", kind)
		}
		p[n] = value
	default:
		return fmt.Errorf("%s: parent is not an object or array", path)
	}
	return nil
}

// setImages rewrites the image of every container named name, as
// kustomize's images field does.
func setImages(raw map[string]any, name, newName, newTag string) {
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if (k == "containers" || k == "initContainers") && c != nil {
					for _, ct := range c.([]any) {
						m := ct.(map[string]any)
						img, _ := m["image"].(string)
						base, tag, _ := strings.Cut(img, ":")
						if base == name {
							if newName != "" {
								base = newName
							}
							if newTag != "" {
								tag = newTag
							}
							if tag != "" {
								base += ":" + tag
							}
							m["image"] = base
						}
					}
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(raw)
}

// decode checks each object's apiVersion for its kind and decodes it
// strictly into its k8s.io/api type; names must be unique per kind.
func decode(objs []*object) error {
	seen := map[string]string{}
	var errs []string
	for _, o := range objs {
		k, ok := kinds[o.kind]
		if !ok {
			names := make([]string, 0, len(kinds))
			for n := range kinds {
				names = append(names, n)
			}
			sort.Strings(names)
			errs = append(errs, fmt.Sprintf("%s: kind %q: expected one of %s", o.file, o.kind, strings.Join(names, ", ")))
			continue
		}
		if o.apiVersion != k.apiVersion {
			errs = append(errs, fmt.Sprintf("%s: %s apiVersion %q: expected %s", o.file, o.kind, o.apiVersion, k.apiVersion))
			continue
		}
		if prev, dup := seen[o.key()]; dup {
			errs = append(errs, fmt.Sprintf("%s: %s is also defined in %s", o.file, o.key(), prev))
			continue
		}
		seen[o.key()] = o.file
		js, err := json.Marshal(o.raw)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", o.file, err))
			continue
		}
		o.typed = k.new()
		if err := strictJSON(js, o.typed); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s %s: %v", o.file, o.kind, o.name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}
