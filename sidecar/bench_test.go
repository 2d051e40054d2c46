package sidecar

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkThroughSidecars is one call of app A to app B the sidecar way:
// A's outbound port, then B's sidecar inbound listener, then B. Compare
// with BenchmarkDirect (the same call straight to B).
func BenchmarkThroughSidecars(b *testing.B) { benchCall(b, true) }

// BenchmarkDirect is the same call straight to the app.
func BenchmarkDirect(b *testing.B) { benchCall(b, false) }

func benchCall(b *testing.B, viaSidecars bool) {
	regURL, c := startRegistry(b)
	appB := newApp(b, "b")
	url := appB.srv.URL + "/x"
	if viaSidecars {
		runSidecar(b, sidecarYAML("b", appB.addr(), regURL, "access_log: off\n"))
		waitFor(b, "b registered", func() bool { return len(instances(b, c, "b")) == 1 })
		sa, _ := runSidecar(b, sidecarYAML("a", appB.addr(), regURL, "access_log: off\ndependencies: {b: {}}\n"))
		url = "http://" + sa.OutboundAddr().String() + "/b/x"
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
