package gateway

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/edge"
)

// RouteCache is a route's use of a named cache: the name alone
// (cache: edge) or the name with overrides of that cache's policy
// (cache: {name: edge, default_ttl: 60s}). Unset overrides keep the
// cache's values.
type RouteCache struct {
	// Name is a key of the top-level caches block. Required.
	Name string `yaml:"name"`
	// DefaultTTL, TTLJitter, StaleWhileRevalidate, StaleIfError, Key and
	// AllowSetCookie override the named cache's (see edge.Policy).
	DefaultTTL           *time.Duration  `yaml:"default_ttl"`
	TTLJitter            *config.Percent `yaml:"ttl_jitter"`
	StaleWhileRevalidate *time.Duration  `yaml:"stale_while_revalidate"`
	StaleIfError         *time.Duration  `yaml:"stale_if_error"`
	Key                  []string        `yaml:"key"`
	AllowSetCookie       *bool           `yaml:"allow_set_cookie"`
}

var routeCacheKeys = []string{"name", "default_ttl", "ttl_jitter", "stale_while_revalidate", "stale_if_error", "key", "allow_set_cookie"}

// UnmarshalYAML accepts a cache name or a mapping with name and overrides;
// unknown keys are refused.
func (c *RouteCache) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*c = RouteCache{Name: n.Value}
		return nil
	case yaml.MappingNode:
	default:
		return errors.New("expected a cache name or a mapping {name: NAME, default_ttl: ..., ...}")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if !slices.Contains(routeCacheKeys, k) {
			hint := ""
			if s := config.Closest(k, routeCacheKeys); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			return fmt.Errorf("unknown key %q in cache%s: expected %s", k, hint, strings.Join(routeCacheKeys, ", "))
		}
	}
	type plain RouteCache
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*c = RouteCache(p)
	return nil
}

// policy is the named cache's policy with the route's overrides.
func (c *RouteCache) policy(base edge.Policy) edge.Policy {
	p := base
	if c.DefaultTTL != nil {
		p.DefaultTTL = *c.DefaultTTL
	}
	if c.TTLJitter != nil {
		p.TTLJitter = *c.TTLJitter
	}
	if c.StaleWhileRevalidate != nil {
		p.StaleWhileRevalidate = *c.StaleWhileRevalidate
	}
	if c.StaleIfError != nil {
		p.StaleIfError = *c.StaleIfError
	}
	if c.Key != nil {
		p.Key = c.Key
	}
	if c.AllowSetCookie != nil {
		p.AllowSetCookie = *c.AllowSetCookie
	}
	return p
}

// CacheNames returns the names of the caches block, sorted.
func (c *Config) CacheNames() []string {
	names := make([]string, 0, len(c.Caches))
	for n := range c.Caches {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// buildCaches makes the memory tier of each named cache, keeping the
// previous generation's store (and what it holds) when its bounds did
// not change.
func buildCaches(cfg *Config, prev *runtime) (map[string]*edge.Store, error) {
	stores := map[string]*edge.Store{}
	disks := map[string]string{} // directory: cache
	var errs []error
	for _, name := range cfg.CacheNames() {
		cc := cfg.Caches[name]
		if cc == nil {
			errs = append(errs, cfg.Errorf("caches."+name, "empty cache: expected memory (e.g. memory: 512MiB)"))
			continue
		}
		if err := cc.Validate(); err != nil {
			errs = append(errs, cfg.Wrap("caches."+name, err))
			continue
		}
		if cc.Disk != nil {
			if other, dup := disks[filepath.Clean(cc.Disk.Path)]; dup {
				errs = append(errs, cfg.Errorf("caches."+name+".disk.path", "%q is also cache %q's disk: each cache needs its own directory", cc.Disk.Path, other))
				continue
			}
			disks[filepath.Clean(cc.Disk.Path)] = name
		}
		if prev != nil {
			if old, ok := prev.caches[name]; ok && prev.cfg.Caches[name] != nil &&
				prev.cfg.Caches[name].Memory == cc.Memory && prev.cfg.Caches[name].MaxObject == cc.MaxObject &&
				sameDisk(prev.cfg.Caches[name].Disk, cc.Disk) {
				stores[name] = old
				continue
			}
		}
		s, err := edge.OpenStore(edge.StoreOptions{Memory: int64(cc.Memory), MaxObject: int64(cc.MaxObject), Disk: cc.Disk})
		if err != nil {
			errs = append(errs, cfg.Errorf("caches."+name+".disk", "%v", err))
			continue
		}
		stores[name] = s
	}
	if len(errs) > 0 {
		closeStores(stores, prev)
	}
	return stores, errors.Join(errs...)
}

func sameDisk(a, b *edge.Disk) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// closeStores closes the stores (their disk writers) that keep is not
// also using.
func closeStores(stores map[string]*edge.Store, keep *runtime) {
	for name, s := range stores {
		if keep != nil && keep.caches[name] == s {
			continue
		}
		_ = s.Close()
	}
}

// routeCache builds a route's cache over its named store.
func (rt *runtime) routeCache(cfg *Config, path string, r Route, deps buildDeps) (*edge.Cache, error) {
	rc := r.Cache
	if rc.Name == "" {
		return nil, cfg.Errorf(path+".cache", "missing cache name: expected one of the caches block (%s)", strings.Join(cfg.CacheNames(), ", "))
	}
	store, ok := rt.caches[rc.Name]
	if !ok {
		return nil, cfg.Errorf(path+".cache", "unknown cache %q: expected one of the caches block (%s)", rc.Name, strings.Join(cfg.CacheNames(), ", "))
	}
	pol := rc.policy(cfg.Caches[rc.Name].Policy)
	c, err := edge.New(store, pol, edge.Options{Compress: cfg.Caches[rc.Name].Compress, ForwardTags: cfg.Caches[rc.Name].ForwardTags})
	if err != nil {
		return nil, cfg.Wrap(path+".cache", err)
	}
	if deps.handler != nil {
		c.SetBackground(deps.handler)
	}
	return c, nil
}

// releaseStores closes rt's stores (their disk writers) that keep, the
// generation replacing rt, does not use.
func (rt *runtime) releaseStores(keep *runtime) { closeStores(rt.caches, keep) }

// closeCaches stops the routes' background revalidations.
func (rt *runtime) closeCaches() {
	for _, c := range rt.routeCaches {
		_ = c.Close()
	}
}
