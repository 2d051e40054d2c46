package gateway

import (
	"strings"
	"testing"
)

// TestNetHTTPHTTP2 runs the tests of HTTP/2 and TLS listeners again
// with server.http2: net/http (the standard library's HTTP/2 server) in
// place of switchyard's (package httpserver/h2), the default they run
// with as themselves.
func TestNetHTTPHTTP2(t *testing.T) {
	testHTTP2 = "net/http"
	defer func() { testHTTP2 = "" }()
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"GRPCThroughH2C", TestGRPCThroughH2C},
		{"GRPCThroughTLS", TestGRPCThroughTLS},
		{"GRPCStreamsEndingUnderLoad", TestGRPCStreamsEndingUnderLoad},
		{"GRPCHeaderBeforeMessages", TestGRPCHeaderBeforeMessages},
		{"GRPCFrameManyStreamsOneUpstreamConn", TestGRPCFrameManyStreamsOneUpstreamConn},
		{"GRPCFrameSlowReaderIsBounded", TestGRPCFrameSlowReaderIsBounded},
		{"GRPCFrameUpstreamDeathIsUnavailable", TestGRPCFrameUpstreamDeathIsUnavailable},
		{"GRPCFrameClientResetCancelsUpstream", TestGRPCFrameClientResetCancelsUpstream},
		{"GRPCFrameBalancesTargets", TestGRPCFrameBalancesTargets},
		{"ProtocolH2C", TestProtocolH2C},
		{"ProtocolTLSNegotiatesHTTP2", TestProtocolTLSNegotiatesHTTP2},
		{"ProtocolLargeBodyStreamed", TestProtocolLargeBodyStreamed},
		{"ProtocolSSEIsNotBuffered", TestProtocolSSEIsNotBuffered},
		{"ProtocolWebSocketPassthrough", TestProtocolWebSocketPassthrough},
		{"StreamsSSEThroughAuthenticatedCachedRoute", TestStreamsSSEThroughAuthenticatedCachedRoute},
		{"ClientTLS", TestClientTLS},
		{"HandshakeFlood", TestHandshakeFlood},
		{"GRPCJSONThroughGateway", TestGRPCJSONThroughGateway},
	} {
		t.Run(tc.name, tc.f)
	}
}

// TestHTTP2ServerConfig: server.http2 takes net/http or switchyard; other
// values are refused with the key's location.
func TestHTTP2ServerConfig(t *testing.T) {
	const minimal = "upstreams:\n  a: { targets: [{ address: 127.0.0.1:1 }] }\nroutes:\n  - { match: { path_prefix: / }, upstream: a }\n"
	for _, v := range []string{"net/http", "switchyard"} {
		if _, err := ParseConfig([]byte("listen: 127.0.0.1:0\nh2c: true\nserver:\n  http2: "+v+"\n"+minimal), "g.yaml"); err != nil {
			t.Errorf("http2: %s: %v", v, err)
		}
	}
	_, err := ParseConfig([]byte("listen: 127.0.0.1:0\nserver:\n  http2: nghttp2\n"+minimal), "g.yaml")
	if err == nil || !strings.Contains(err.Error(), "g.yaml:3") || !strings.Contains(err.Error(), "server.http2") {
		t.Fatalf("error %v, want g.yaml:3 and server.http2", err)
	}
}
