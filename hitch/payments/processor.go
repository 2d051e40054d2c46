package payments

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/kit/resilient"
	"github.com/switchyard/switchyard/retry"
)

// processor calls the card processor through kit/resilient:
//
//	Trace → Timeout(call) → Retry(5xx, timeouts, resets, refused connections; budget)
//	      → Breaker(per host) → Timeout(attempt) → transport
//
// Retries happen only because every call carries an Idempotency-Key (the
// retry layer refuses to resend a POST without one), so a resent charge is
// the same charge. An open breaker fails the call at once; the saga backs
// off and tries the step again later.
type processor struct {
	base     string
	client   *http.Client
	breakers *resilient.Breakers
	host     string
}

func newProcessor(cfg Config) (*processor, error) {
	br, err := resilient.NewBreakers(resilient.BreakerConfig{Breaker: cfg.Processor.Breaker})
	if err != nil {
		return nil, err
	}
	rt, err := resilient.NewRetry(resilient.RetryConfig{Retry: retry.Config{
		Attempts: cfg.Processor.Attempts,
		Base:     cfg.Processor.RetryBase,
		On:       []string{retry.OnConnectFailure, retry.OnTimeout, retry.OnReset, retry.On5xx},
		Budget:   percent(cfg.Processor.RetryBudget),
	}})
	if err != nil {
		return nil, err
	}
	transport := cfg.HTTPClient.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	stack := resilient.Chain(transport,
		resilient.Trace,
		resilient.Timeout(cfg.Processor.Timeout),
		rt.Wrap,
		br.Wrap,
		resilient.Timeout(cfg.Processor.AttemptTimeout),
	)
	host := cfg.ProcessorURL
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host, _, _ = strings.Cut(host, "/")
	return &processor{base: strings.TrimRight(cfg.ProcessorURL, "/"), client: &http.Client{Transport: stack}, breakers: br, host: host}, nil
}

// breaker is the processor's circuit breaker.
func (p *processor) breaker() *breaker.Breaker { return p.breakers.For(p.host) }

// refusedError is a definitive answer: the processor understood the call
// and refused it (4xx). Trying again with the same key cannot change it.
type refusedError struct {
	Status int
	Code   string
	Msg    string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("card processor refused (%d %s): %s", e.Status, e.Code, e.Msg)
}

// post sends body to path with the idempotency key and decodes a 2xx answer
// into out. A 4xx is a *refusedError; anything else (5xx, timeouts, an
// open breaker) is a transient error the caller may try again with the
// same key.
func (p *processor) post(ctx context.Context, path, key string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(retry.IdempotencyKeyHeader, key)
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("card processor POST %s (key %s): %w", path, key, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("card processor POST %s (key %s): reading the answer: %w", path, key, err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("card processor POST %s (key %s): decoding the answer: %w", path, key, err)
		}
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout:
		var e struct{ Error, Code string }
		json.Unmarshal(data, &e)
		return &refusedError{Status: resp.StatusCode, Code: e.Code, Msg: e.Error}
	default:
		return fmt.Errorf("card processor POST %s (key %s): status %d: %.200s", path, key, resp.StatusCode, data)
	}
}

// The processor's wire shapes (hitch/cardprocessor's API).
type (
	chargeReq struct {
		AmountCents int64  `json:"amount_cents"`
		Currency    string `json:"currency"`
		Card        string `json:"card"`
		Customer    string `json:"customer"`
		Description string `json:"description"`
	}
	chargeResp struct {
		ChargeID    string `json:"charge_id"`
		Status      string `json:"status"`
		DeclineCode string `json:"decline_code"`
		AmountCents int64  `json:"amount_cents"`
	}
	refundReq struct {
		ChargeID    string `json:"charge_id"`
		AmountCents int64  `json:"amount_cents"`
	}
	refundResp struct {
		RefundID    string `json:"refund_id"`
		AmountCents int64  `json:"amount_cents"`
	}
	payoutReq struct {
		Driver      string `json:"driver"`
		AmountCents int64  `json:"amount_cents"`
		Currency    string `json:"currency"`
	}
	payoutResp struct {
		PayoutID    string `json:"payout_id"`
		Status      string `json:"status"`
		FailureCode string `json:"failure_code"`
		AmountCents int64  `json:"amount_cents"`
	}
)
