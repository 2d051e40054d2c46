package slo

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names the engine exports (computed on each scrape).
var (
	sliDesc = prometheus.NewDesc("switchyard_slo_sli",
		"Share of good requests over the SLO window (1 without requests).", []string{"slo", "kind"}, nil)
	objectiveDesc = prometheus.NewDesc("switchyard_slo_objective",
		"The SLO's objective (target share of good requests).", []string{"slo"}, nil)
	budgetDesc = prometheus.NewDesc("switchyard_slo_error_budget_remaining",
		"Share of the error budget left over the SLO window: 1 untouched, 0 spent, negative overspent.", []string{"slo"}, nil)
	goodDesc = prometheus.NewDesc("switchyard_slo_window_good_requests",
		"Good requests counted over the SLO window.", []string{"slo"}, nil)
	totalDesc = prometheus.NewDesc("switchyard_slo_window_requests",
		"Requests counted over the SLO window.", []string{"slo"}, nil)
	burnDesc = prometheus.NewDesc("switchyard_slo_burn_rate",
		"Error budget burn rate over an alert window (1 = spending exactly the budget over the SLO window).", []string{"slo", "window"}, nil)
	firingDesc = prometheus.NewDesc("switchyard_slo_alert_firing",
		"1 while the burn-rate alert fires, else 0.", []string{"slo", "alert", "severity"}, nil)
)

// Collector returns a Prometheus collector of the engine's SLOs: SLI,
// objective, budget remaining, window counts, burn rate per alert window
// and alert state.
func (e *Engine) Collector() prometheus.Collector { return collector{e} }

type collector struct{ e *Engine }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sliDesc, objectiveDesc, budgetDesc, goodDesc, totalDesc, burnDesc, firingDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.e.Status() {
		ch <- prometheus.MustNewConstMetric(sliDesc, prometheus.GaugeValue, s.SLI, s.Name, s.Kind)
		ch <- prometheus.MustNewConstMetric(objectiveDesc, prometheus.GaugeValue, s.Objective, s.Name)
		ch <- prometheus.MustNewConstMetric(budgetDesc, prometheus.GaugeValue, s.BudgetRemaining, s.Name)
		ch <- prometheus.MustNewConstMetric(goodDesc, prometheus.GaugeValue, float64(s.Good), s.Name)
		ch <- prometheus.MustNewConstMetric(totalDesc, prometheus.GaugeValue, float64(s.Total), s.Name)
		windows := map[string]float64{}
		for _, a := range s.Alerts {
			windows[promDuration(parseStd(a.LongWindow))] = a.LongBurn
			windows[promDuration(parseStd(a.ShortWindow))] = a.ShortBurn
			v := 0.0
			if a.Firing {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(firingDesc, prometheus.GaugeValue, v, s.Name, a.Name, a.Severity)
		}
		for w, b := range windows {
			ch <- prometheus.MustNewConstMetric(burnDesc, prometheus.GaugeValue, b, s.Name, w)
		}
	}
}

func parseStd(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}
