package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/edge"
)

var _ admin.CacheBackend = (*Gateway)(nil)

// Caches implements admin.CacheBackend.
func (g *Gateway) Caches() []admin.Cache {
	rt := g.current.Load()
	out := []admin.Cache{}
	for _, name := range rt.cfg.CacheNames() {
		if s, ok := rt.caches[name]; ok {
			out = append(out, admin.Cache{Name: name, Stats: s.Stats()})
		}
	}
	return out
}

func (g *Gateway) store(name string) (*edge.Store, error) {
	s, ok := g.current.Load().caches[name]
	if !ok {
		names := g.current.Load().cfg.CacheNames()
		if len(names) == 0 {
			return nil, admin.NotFound("unknown cache %q: this gateway's config has no caches block", name)
		}
		return nil, admin.NotFound("unknown cache %q: expected one of %s", name, strings.Join(names, ", "))
	}
	return s, nil
}

// Purge implements admin.CacheBackend.
func (g *Gateway) Purge(cache string, p admin.Purge) (int, error) {
	s, err := g.store(cache)
	if err != nil {
		return 0, err
	}
	switch {
	case p.URL != "":
		return s.PurgeURL(p.URL, p.Mode()), nil
	case p.Prefix != "":
		return s.PurgePrefix(p.Prefix, p.Mode()), nil
	}
	return s.PurgeTag(p.Tag, p.Mode()), nil
}

// CacheEntries implements admin.CacheBackend.
func (g *Gateway) CacheEntries(cache, url string, limit int) ([]edge.EntryInfo, error) {
	s, err := g.store(cache)
	if err != nil {
		return nil, err
	}
	return s.Inspect(url, limit), nil
}

// CacheMaxObject implements admin.CacheBackend.
func (g *Gateway) CacheMaxObject(cache string) (int64, error) {
	s, err := g.store(cache)
	if err != nil {
		return 0, err
	}
	return s.MaxObject(), nil
}

// Push implements admin.CacheBackend: the object is stored by the cache
// of the route a GET of rawURL matches, which must use the named cache.
func (g *Gateway) Push(cache, rawURL string, obj edge.PushObject) error {
	store, err := g.store(cache)
	if err != nil {
		return err
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("invalid url %q: expected http://host/path", rawURL)
	}
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("invalid url %q: %w", rawURL, err)
	}
	rt := g.current.Load()
	pr, ok := rt.Resolve(req)
	if !ok {
		return admin.NotFound("no route matches GET %s", rawURL)
	}
	c, ok := rt.cacheOf[pr]
	if !ok || c.Store() != store {
		return fmt.Errorf("route %q does not use cache %q", pr.Name, cache)
	}
	return c.Push(req, obj)
}

// cacheCollector exports the edge caches' counters on each scrape.
type cacheCollector struct{ g *Gateway }

var cacheDescs = []struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(edge.Stats) int64
}{
	{prometheus.NewDesc("switchyard_cache_hits_total", "Requests answered from a fresh stored response (stale answers count in stale_served).", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.Hits }},
	{prometheus.NewDesc("switchyard_cache_misses_total", "Requests the cache forwarded to fill or validate an entry.", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.Misses }},
	{prometheus.NewDesc("switchyard_cache_stale_served_total", "Stale answers (stale-while-revalidate, stale-if-error, max-stale).", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.StaleServed }},
	{prometheus.NewDesc("switchyard_cache_revalidations_total", "Conditional requests sent to validate a stale entry (foreground and background).", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.Revalidations }},
	{prometheus.NewDesc("switchyard_cache_coalesced_total", "Requests that waited for another request's origin fetch instead of making their own.", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.Coalesced }},
	{prometheus.NewDesc("switchyard_cache_evictions_total", "Entries evicted to stay within memory.", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.Evictions }},
	{prometheus.NewDesc("switchyard_cache_purged_total", "Entries purged through the admin API.", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.Purged }},
	{prometheus.NewDesc("switchyard_cache_stored_total", "Responses stored.", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.Stored }},
	{prometheus.NewDesc("switchyard_cache_bytes", "Bytes of headers and bodies (plus per-entry overhead) held in memory.", []string{"cache"}, nil), prometheus.GaugeValue, func(s edge.Stats) int64 { return s.Bytes }},
	{prometheus.NewDesc("switchyard_cache_entries", "Entries held in memory.", []string{"cache"}, nil), prometheus.GaugeValue, func(s edge.Stats) int64 { return s.Entries }},
	{prometheus.NewDesc("switchyard_cache_disk_bytes", "Bytes of the disk tier's files.", []string{"cache"}, nil), prometheus.GaugeValue, func(s edge.Stats) int64 { return s.DiskBytes }},
	{prometheus.NewDesc("switchyard_cache_disk_entries", "Files in the disk tier.", []string{"cache"}, nil), prometheus.GaugeValue, func(s edge.Stats) int64 { return s.DiskEntries }},
	{prometheus.NewDesc("switchyard_cache_disk_loads_total", "Entries read back from the disk tier into memory.", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.DiskLoads }},
	{prometheus.NewDesc("switchyard_cache_disk_writes_total", "Files written to the disk tier.", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.DiskWrites }},
	{prometheus.NewDesc("switchyard_cache_disk_corrupt_total", "Disk tier files found corrupt (bad header, length or checksum) and deleted.", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.DiskCorrupt }},
	{prometheus.NewDesc("switchyard_cache_disk_evictions_total", "Disk tier files evicted to stay within disk.size.", []string{"cache"}, nil), prometheus.CounterValue, func(s edge.Stats) int64 { return s.DiskEvictions }},
}

func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range cacheDescs {
		ch <- d.desc
	}
}

func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	for _, cache := range c.g.Caches() {
		for _, d := range cacheDescs {
			ch <- prometheus.MustNewConstMetric(d.desc, d.kind, float64(d.value(cache.Stats)), cache.Name)
		}
	}
}
