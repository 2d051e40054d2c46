package up

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/switchyard/switchyard/telemetry"
	"github.com/switchyard/switchyard/tlsconf"
)

// receiver is the OTLP/HTTP receiver `hitch up` serves on loopback when
// no collector is configured: the children's spans go into the gateway's
// trace store.
type receiver struct {
	url string
	srv *http.Server
}

func (r *receiver) Close() error { return r.srv.Close() }

func receiverURL(r *receiver) string {
	if r == nil {
		return ""
	}
	return r.url + "/v1/traces"
}

// setupTracing builds the gateway's tracing (service "gateway") and the
// environment of the children. The operator's OTEL_* variables pass to
// every child as they are; each child gets OTEL_SERVICE_NAME, its own
// name. Without OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, a receiver on
// loopback feeds the gateway's store and the children export there over
// http/protobuf, in batches every 200 ms (OTEL_BSP_SCHEDULE_DELAY,
// unless set), so a trace is whole within a second. Under --secure the
// receiver is HTTPS with the gateway's certificate and requires a client
// certificate from the local CA: each child gets the standard
// OTEL_EXPORTER_OTLP_CERTIFICATE (the CA), _CLIENT_CERTIFICATE and
// _CLIENT_KEY (its own leaf), which any OTLP exporter reads.
func setupTracing(ctx context.Context, getenv func(string) string, sec *secure) (*telemetry.Tracing, func(name string) []string, *receiver, error) {
	tr, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: firstSet(getenv("OTEL_SERVICE_NAME"), "gateway")}, "gateway", getenv)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tracing (OTEL_* environment): %w", err)
	}
	extra := []string{}
	var rcv *receiver
	if !tr.Exporting {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tr.Shutdown(ctx)
			return nil, nil, nil, fmt.Errorf("trace receiver listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("POST /v1/traces", tr.Store.Receiver(telemetry.ReceiverOptions{}))
		rcv = &receiver{url: "http://" + ln.Addr().String(), srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
		if sec != nil {
			gw := sec.leaves[IDGateway]
			cfg, err := tlsconf.ServerConfig(sec.ca.CACert(), gw.Cert, gw.Key, func(name string) bool { return name != "" })
			if err != nil {
				ln.Close()
				tr.Shutdown(ctx)
				return nil, nil, nil, fmt.Errorf("trace receiver TLS: %w", err)
			}
			ln = tls.NewListener(ln, cfg)
			rcv.url = "https://" + strings.TrimPrefix(rcv.url, "http://")
		}
		go rcv.srv.Serve(ln)
		extra = append(extra, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="+rcv.url+"/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf")
		if getenv("OTEL_BSP_SCHEDULE_DELAY") == "" {
			extra = append(extra, "OTEL_BSP_SCHEDULE_DELAY=200")
		}
	}
	env := func(name string) []string {
		// Later entries win (os/exec keeps the last of duplicate keys).
		env := append(append(environ(), extra...), "OTEL_SERVICE_NAME="+name)
		if rcv != nil && sec != nil {
			l := sec.leaves[name]
			env = append(env, "OTEL_EXPORTER_OTLP_CERTIFICATE="+sec.ca.CACert(),
				"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE="+l.Cert, "OTEL_EXPORTER_OTLP_CLIENT_KEY="+l.Key)
		}
		return env
	}
	return tr, env, rcv, nil
}

func firstSet(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
