package cache

import "github.com/prometheus/client_golang/prometheus"

// Collector exports a cache's Stats as Prometheus metrics named
// switchyard_cache_*, labelled cache=<name>. Register one per cache:
//
//	prometheus.MustRegister(cache.NewCollector("users", c.Stats))
type Collector struct {
	stats func() Stats
	descs [10]*prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector reading stats (a Cache's Stats method)
// at every scrape.
func NewCollector(name string, stats func() Stats) *Collector {
	l := prometheus.Labels{"cache": name}
	d := func(n, help string) *prometheus.Desc {
		return prometheus.NewDesc("switchyard_cache_"+n, help, nil, l)
	}
	return &Collector{stats: stats, descs: [10]*prometheus.Desc{
		d("hits_total", "Reads answered with a cached value."),
		d("negative_hits_total", "Reads answered with a cached not-found."),
		d("misses_total", "Reads that found nothing cached (or an expired entry)."),
		d("loads_total", "Loader calls (concurrent misses of one key share one)."),
		d("load_errors_total", "Loader calls that failed or panicked."),
		d("refreshes_total", "Background refresh-ahead loads started."),
		d("evictions_total", "Entries evicted to stay under the byte bound."),
		d("expirations_total", "Entries dropped because their TTL passed."),
		d("entries", "Entries cached now."),
		d("bytes", "Bytes accounted to cached entries now."),
	}}
}

// Describe sends the metrics' descriptions.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect reads one Stats snapshot and sends it.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	counters := [...]uint64{s.Hits, s.NegativeHits, s.Misses, s.Loads, s.LoadErrors, s.Refreshes, s.Evictions, s.Expirations}
	for i, v := range counters {
		ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.CounterValue, float64(v))
	}
	ch <- prometheus.MustNewConstMetric(c.descs[8], prometheus.GaugeValue, float64(s.Entries))
	ch <- prometheus.MustNewConstMetric(c.descs[9], prometheus.GaugeValue, float64(s.Bytes))
}
