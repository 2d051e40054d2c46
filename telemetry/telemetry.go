// Package telemetry sets up tracing with OpenTelemetry for every switchyard
// process: a tracer provider configured from YAML or from the standard
// OTEL_* environment variables (so any collector works the way users already
// set it up), OTLP export over gRPC or HTTP/protobuf when configured, and,
// with nothing configured, a bounded in-memory store of recent traces
// (Store) that the admin API serves, with tail-based keeping: slow and
// failed traces are kept (and exported) even when the sampler dropped them.
//
// How the sampling works: the configured sampler (default parent-based,
// ratio 0.01, and at least 10 root traces a second whatever the ratio)
// decides which traces are sampled, i.e. exported as usual and
// marked sampled in the traceparent sent downstream. Every other span
// started with a Tracer is still recorded (RecordOnly) so that when its
// local root ends the Store can see whether the trace failed or was slow,
// and then keep and export it anyway. The gateway's request path does not
// pay for that: its RequestTracer records nothing for an unsampled
// request until it turns out slow or failed, then builds its spans.
package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/certfile"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"
)

// Config configures tracing. The zero value samples up to 10 root traces
// a second and a hundredth of the rest, and keeps every slow or failed
// one, in the in-memory store and exports nothing, unless the OTEL_*
// environment variables say otherwise.
type Config struct {
	// ServiceName is the service.name resource attribute. Default
	// $OTEL_SERVICE_NAME, else the program's own default.
	ServiceName string `yaml:"service_name"`
	// Sampler: parentbased_traceidratio, parentbased_always_on,
	// parentbased_always_off, traceidratio, always_on or always_off (the
	// OTEL_TRACES_SAMPLER names). Default $OTEL_TRACES_SAMPLER, else
	// parentbased_traceidratio.
	Sampler string `yaml:"sampler"`
	// Ratio of root traces sampled by the ratio samplers, in [0, 1].
	// Default $OTEL_TRACES_SAMPLER_ARG, else 0.01 (slow and failed traces
	// are kept whatever the ratio).
	Ratio *float64 `yaml:"ratio"`
	// MinPerSecond root traces a second are sampled by the ratio samplers
	// whatever the ratio (a reservoir, as AWS X-Ray's): a quiet service
	// has every request traced, a busy one pays for the ratio only.
	// Default 10 when neither ratio nor $OTEL_TRACES_SAMPLER_ARG is set,
	// else 0 (the ratio alone).
	MinPerSecond *int `yaml:"min_per_second"`
	// OTLP exports spans to a collector. Default: from
	// $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT
	// when either is set (with $OTEL_EXPORTER_OTLP_PROTOCOL and
	// $OTEL_EXPORTER_OTLP_HEADERS, read by the exporter), else none.
	OTLP *OTLP `yaml:"otlp"`
	// Memory is the in-memory store of recent traces.
	Memory Memory `yaml:"memory"`
	// Disabled turns tracing off: no spans, only trace context passed on.
	Disabled bool `yaml:"disabled"`
}

// OTLP configures the exporter.
type OTLP struct {
	// Endpoint is the collector's URL: http://HOST:4318 for
	// http/protobuf (the /v1/traces path is added when the URL has no
	// path), or http://HOST:4317 for grpc. Required.
	Endpoint string `yaml:"endpoint"`
	// Protocol: grpc or http/protobuf. Default http/protobuf.
	Protocol string `yaml:"protocol"`
	// Headers sent with every export (e.g. an API key). Values may be
	// "env:NAME" to read an environment variable.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one export. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// Memory configures the Store.
type Memory struct {
	// Traces is how many recent traces are kept, and as many slow or
	// failed ones besides. Default 200; at most 100000.
	Traces int `yaml:"traces"`
	// Slow is the duration from which a trace is kept as slow. Default 1s.
	Slow time.Duration `yaml:"slow"`
	// MaxSpans bounds the spans kept per trace. Default 512.
	MaxSpans int `yaml:"max_spans"`
}

const (
	defaultTraces   = 200
	defaultSlow     = time.Second
	defaultMaxSpans = 512
)

// Validate reports every problem, each naming its key.
func (c Config) Validate() error {
	var errs []error
	switch c.Sampler {
	case "", "parentbased_traceidratio", "parentbased_always_on", "parentbased_always_off", "traceidratio", "always_on", "always_off":
	default:
		errs = append(errs, config.Fieldf("sampler", "%q is not one of parentbased_traceidratio, parentbased_always_on, parentbased_always_off, traceidratio, always_on, always_off", c.Sampler))
	}
	if c.Ratio != nil && (*c.Ratio < 0 || *c.Ratio > 1 || *c.Ratio != *c.Ratio) {
		errs = append(errs, config.Fieldf("ratio", "%v is not in [0, 1]", *c.Ratio))
	}
	if c.MinPerSecond != nil && *c.MinPerSecond < 0 {
		errs = append(errs, config.Fieldf("min_per_second", "%d is negative", *c.MinPerSecond))
	}
	if o := c.OTLP; o != nil {
		if u, err := url.Parse(o.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, config.Fieldf("otlp.endpoint", "%q is not an http:// or https:// URL", o.Endpoint))
		}
		switch o.Protocol {
		case "", "grpc", "http/protobuf":
		default:
			errs = append(errs, config.Fieldf("otlp.protocol", "%q is not grpc or http/protobuf", o.Protocol))
		}
		if o.Timeout < 0 {
			errs = append(errs, config.Fieldf("otlp.timeout", "%s is negative", o.Timeout))
		}
	}
	if c.Memory.Traces < 0 || c.Memory.Traces > 100000 {
		errs = append(errs, config.Fieldf("memory.traces", "%d is not in [0, 100000]", c.Memory.Traces))
	}
	if c.Memory.Slow < 0 {
		errs = append(errs, config.Fieldf("memory.slow", "%s is negative", c.Memory.Slow))
	}
	if c.Memory.MaxSpans < 0 || c.Memory.MaxSpans > 100000 {
		errs = append(errs, config.Fieldf("memory.max_spans", "%d is not in [0, 100000]", c.Memory.MaxSpans))
	}
	return errors.Join(errs...)
}

// Tracing is a configured tracer provider and its store.
type Tracing struct {
	Provider *sdktrace.TracerProvider
	Store    *Store
	// Exporting reports whether spans leave the process (OTLP).
	Exporting bool

	head sdktrace.Sampler // the configured head sampler (see RequestTracer)
}

// Tracer returns a named tracer of the provider.
func (t *Tracing) Tracer(name string) trace.Tracer { return t.Provider.Tracer(name) }

// Shutdown flushes and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.Provider.Shutdown(ctx) }

// Propagator is the W3C trace-context and baggage propagator every
// switchyard component uses.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Setup builds the tracer provider from cfg and the environment
// (getenv; nil means os.Getenv). defaultService names the service when
// neither cfg nor $OTEL_SERVICE_NAME does.
func Setup(ctx context.Context, cfg Config, defaultService string, getenv func(string) string) (*Tracing, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	service := cfg.ServiceName
	if service == "" {
		service = getenv("OTEL_SERVICE_NAME")
	}
	if service == "" {
		service = defaultService
	}
	otlp := cfg.OTLP
	if otlp == nil && !cfg.Disabled {
		if ep := firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); ep != "" {
			otlp = &OTLP{Endpoint: ep, Protocol: firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))}
			if err := (Config{OTLP: otlp}).Validate(); err != nil {
				return nil, fmt.Errorf("from the environment: %w", err)
			}
		}
	}
	base, err := sampler(cfg, getenv)
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, err
	}
	mem := cfg.Memory
	if mem.Traces == 0 {
		mem.Traces = defaultTraces
	}
	if mem.Slow == 0 {
		mem.Slow = defaultSlow
	}
	if mem.MaxSpans == 0 {
		mem.MaxSpans = defaultMaxSpans
	}
	t := &Tracing{}
	var exp sdktrace.SpanExporter
	if otlp != nil {
		if exp, err = exporter(ctx, otlp, getenv); err != nil {
			return nil, err
		}
		t.Exporting = true
	}
	t.Store = NewStore(mem, service, exp)
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSpanProcessor(t.Store), sdktrace.WithIDGenerator(idGenerator{})}
	if cfg.Disabled {
		t.head = sdktrace.NeverSample()
		opts = append(opts, sdktrace.WithSampler(t.head))
	} else {
		t.head = base
		opts = append(opts, sdktrace.WithSampler(recordAll{base}))
		if exp != nil {
			opts = append(opts, sdktrace.WithBatcher(exp))
		}
	}
	t.Provider = sdktrace.NewTracerProvider(opts...)
	return t, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// sampler is the configured head sampler.
func sampler(cfg Config, getenv func(string) string) (sdktrace.Sampler, error) {
	name := cfg.Sampler
	if name == "" {
		name = getenv("OTEL_TRACES_SAMPLER")
		if err := (Config{Sampler: name}).Validate(); err != nil {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER: %w", err)
		}
	}
	if name == "" {
		name = "parentbased_traceidratio"
	}
	ratio, explicit := defaultRatio, false
	if cfg.Ratio != nil {
		ratio, explicit = *cfg.Ratio, true
	} else if s := getenv("OTEL_TRACES_SAMPLER_ARG"); s != "" && strings.HasSuffix(name, "traceidratio") {
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: %q is not a ratio in [0, 1]", s)
		}
		ratio, explicit = r, true
	}
	per := defaultMinPerSecond
	if cfg.MinPerSecond != nil {
		per = *cfg.MinPerSecond
	} else if explicit {
		per = 0
	}
	withReservoir := func(s sdktrace.Sampler) sdktrace.Sampler {
		if per == 0 {
			return s
		}
		return &reservoir{base: s, per: int64(per)}
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return withReservoir(sdktrace.TraceIDRatioBased(ratio)), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	default:
		return withReservoir(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))), nil
	}
}

const (
	defaultRatio        = 0.01
	defaultMinPerSecond = 10
)

// reservoir samples, besides what base samples, up to per root traces
// (no parent) a second: the first ones of each second, as AWS X-Ray's
// reservoir does. A trace with a parent follows base alone (the parent's
// decision, for the parent-based samplers). The count is approximate at
// the turn of a second (two goroutines may both reset it).
type reservoir struct {
	base sdktrace.Sampler
	per  int64
	sec  atomic.Int64 // the Unix second n counts
	n    atomic.Int64
}

func (r *reservoir) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	res := r.base.ShouldSample(p)
	if res.Decision == sdktrace.RecordAndSample || trace.SpanContextFromContext(p.ParentContext).IsValid() || !r.take() {
		return res
	}
	res.Decision = sdktrace.RecordAndSample
	return res
}

func (r *reservoir) take() bool {
	now := time.Now().Unix()
	if s := r.sec.Load(); s != now && r.sec.CompareAndSwap(s, now) {
		r.n.Store(0)
	}
	if r.n.Load() >= r.per {
		return false
	}
	return r.n.Add(1) <= r.per
}

func (r *reservoir) Description() string {
	return fmt.Sprintf("Reservoir{%d/s,%s}", r.per, r.base.Description())
}

// recordAll turns the base sampler's drops into RecordOnly, so the store
// sees every span and can keep a dropped trace that turned out slow or
// failed. Sampled spans stay sampled.
type recordAll struct{ base sdktrace.Sampler }

func (r recordAll) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if p.ParentContext != nil {
		if f, ok := p.ParentContext.Value(forcedKey{}).(forcedIDs); ok && (f.rebuilt || f.sampled) {
			// A span rebuilt after the fact (RequestTracer.StartAs): the
			// head sampler dropped its trace already. Or one whose
			// request RequestTracer.Sample sampled: asking the sampler
			// again could answer otherwise (the reservoir).
			d := sdktrace.RecordOnly
			if f.sampled {
				d = sdktrace.RecordAndSample
			}
			return sdktrace.SamplingResult{Decision: d, Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
		}
	}
	res := r.base.ShouldSample(p)
	if res.Decision == sdktrace.Drop {
		res.Decision = sdktrace.RecordOnly
	}
	return res
}

func (r recordAll) Description() string { return "RecordAll{" + r.base.Description() + "}" }

func exporter(ctx context.Context, o *OTLP, getenv func(string) string) (sdktrace.SpanExporter, error) {
	u, _ := url.Parse(o.Endpoint)
	headers := map[string]string{}
	for k, v := range o.Headers {
		if name, ok := strings.CutPrefix(v, "env:"); ok {
			v = getenv(name)
		}
		headers[k] = v
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	var tc *tls.Config
	if u.Scheme == "https" {
		var err error
		if tc, err = exporterTLS(getenv); err != nil {
			return nil, err
		}
	}
	if o.Protocol == "grpc" {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(u.Host), otlptracegrpc.WithTimeout(timeout)}
		if u.Scheme == "http" {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if tc != nil {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tc)))
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	path := u.Path
	if path == "" || path == "/" {
		path = "/v1/traces"
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host), otlptracehttp.WithURLPath(path), otlptracehttp.WithTimeout(timeout)}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	if tc != nil {
		opts = append(opts, otlptracehttp.WithTLSClientConfig(tc))
	}
	if len(headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(headers))
	}
	return otlptracehttp.New(ctx, opts...)
}

// exporterTLS is the exporter's TLS config when the environment names a
// client certificate (OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE and
// _CLIENT_KEY, else the OTEL_EXPORTER_OTLP_ ones) and maybe a CA bundle
// (OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE; default the system's), or
// nil when it names no client certificate (the SDK then reads the
// variables itself). The SDK would read the certificate once; here it is
// re-read when its files change (internal/certfile, as every other
// certificate switchyard reloads), so a renewed leaf is presented from
// the exporter's next connection on, without a restart.
func exporterTLS(getenv func(string) string) (*tls.Config, error) {
	cert := firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE"), getenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"))
	key := firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"), getenv("OTEL_EXPORTER_OTLP_CLIENT_KEY"))
	if cert == "" && key == "" {
		return nil, nil
	}
	if cert == "" || key == "" {
		return nil, errors.New("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together: one is set, the other not")
	}
	w, err := certfile.Watch([]string{cert, key}, func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("OTLP client certificate %s / key %s: %w", cert, key, err)
		}
		return &c, nil
	})
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return w.Get(), nil }}
	if ca := firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"), getenv("OTEL_EXPORTER_OTLP_CERTIFICATE")); ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("OTLP CA bundle: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("OTLP CA bundle %s: no PEM certificate in it", ca)
		}
	}
	return tc, nil
}

// SetGlobal installs t's provider and the propagator as OpenTelemetry's
// globals, for libraries that use otel.Tracer.
func (t *Tracing) SetGlobal() {
	otel.SetTracerProvider(t.Provider)
	otel.SetTextMapPropagator(Propagator)
}
