package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// contractCollector exports the OpenAPI contracts' counters on each
// scrape. They restart from zero when a reload re-reads the contracts
// (Prometheus treats that as a counter reset).
type contractCollector struct{ g *Gateway }

var (
	contractRequestsDesc = prometheus.NewDesc("switchyard_contract_requests_total",
		"Requests checked against an OpenAPI contract, by result: checked (all) or refused (400/404/405/413/415).",
		[]string{"contract", "result"}, nil)
	contractResponsesDesc = prometheus.NewDesc("switchyard_contract_responses_total",
		"Responses checked against an OpenAPI contract (responses: report or enforce), by result: checked, violation, or unchecked (not JSON, too large, or streamed).",
		[]string{"contract", "result"}, nil)
)

func (c contractCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- contractRequestsDesc
	ch <- contractResponsesDesc
}

func (c contractCollector) Collect(ch chan<- prometheus.Metric) {
	rt := c.g.current.Load()
	if rt == nil {
		return
	}
	for _, name := range sortedKeys(rt.contracts) {
		s := rt.contracts[name].Stats()
		for _, v := range []struct {
			d      *prometheus.Desc
			result string
			n      uint64
		}{
			{contractRequestsDesc, "checked", s.Checked.Load()},
			{contractRequestsDesc, "refused", s.Refused.Load()},
			{contractResponsesDesc, "checked", s.ResponsesChecked.Load()},
			{contractResponsesDesc, "violation", s.ResponseViolations.Load()},
			{contractResponsesDesc, "unchecked", s.ResponsesUnchecked.Load()},
		} {
			ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n), name, v.result)
		}
	}
}
