package httpserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzEcho answers with what it saw of the request.
var fuzzEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s %s %d %d", r.Method, r.RequestURI, len(r.Header), n)
})

// fuzzDeadline bounds one exchange of a fuzz iteration; both servers are
// sent a request they can finish at once (the client half-closes), so
// only a hang reaches it.
const fuzzDeadline = 5 * time.Second

// FuzzServer sends the same raw bytes to this server and to net/http's,
// both serving fuzzEcho, and checks that this server's answer is well
// formed and, wherever net/http accepted a request (2xx), that this server
// accepted it too and saw the same request. Differences the package doc
// lists are left out (see fuzzKnownDifference).
func FuzzServer(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a?b=c HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\n\r\n",
		"GET http://example.com/p HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /after-close HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: x\r\nX-Empty:\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x y\r\n\r\n",
		"get / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: \x01\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 00003\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}

	ours := startServer(f, fuzzEcho, nil)
	ref := httptest.NewUnstartedServer(fuzzEcho)
	// Known difference: this server passes "OPTIONS *" to the handler,
	// which is what net/http does with this option.
	ref.Config.DisableGeneralOptionsHandler = true
	ref.Config.ErrorLog = log.New(io.Discard, "", 0)
	ref.Start()
	f.Cleanup(ref.Close)
	refAddr := ref.Listener.Addr().String()

	f.Fuzz(func(t *testing.T, raw []byte) {
		reqs := parseRequests(raw)
		var got, want fuzzResult
		var wg sync.WaitGroup
		wg.Go(func() { got = fuzzExchange(ours.addr, raw, reqs) })
		wg.Go(func() { want = fuzzExchange(refAddr, raw, reqs) })
		wg.Wait()

		if got.err != nil {
			t.Fatalf("this server's answer is malformed or late: %v\nrequest: %q\nanswers: %v\nnet/http: %v (%v)",
				got.err, raw, got.answers, want.answers, want.err)
		}
		for i, w := range want.answers {
			if w.status/100 != 2 {
				return // net/http stops at an error; this server may differ from there on
			}
			if i < len(reqs) && fuzzKnownDifference(reqs[i]) != "" {
				return
			}
			if i >= len(got.answers) || got.answers[i] != w {
				t.Fatalf("net/http accepted request %d and this server did not see the same:\nrequest: %q\nthis server: %v\nnet/http:    %v",
					i, raw, got.answers, want.answers)
			}
		}
		// Everything net/http answered was accepted alike: this server
		// must not have found more requests in the bytes (a request
		// smuggled past a front end that frames like net/http).
		if want.err == nil && len(got.answers) > len(want.answers) && got.answers[len(want.answers)].status/100 == 2 {
			t.Fatalf("this server answered a request net/http did not see:\nrequest: %q\nthis server: %v\nnet/http:    %v",
				raw, got.answers, want.answers)
		}
	})
}

// fuzzKnownDifference names a documented difference from net/http that
// applies to req (as ReadRequest parsed it), or returns "".
func fuzzKnownDifference(req parsedRequest) string {
	switch {
	case req.refused != "":
		return "the framing rules refuse it: " + req.refused
	case req.protoMajor != 1:
		return "HTTP/2 is not served (net/http passes a PRI * HTTP/2.0 preface to the handler)"
	case req.host == "" && req.http11 && req.method != http.MethodConnect:
		return "an HTTP/1.1 request with an empty Host field is rejected"
	}
	return ""
}

type parsedRequest struct {
	method     string
	host       string
	protoMajor int
	http11     bool
	refused    string // why framing.go refuses the request (or its body)
}

// parseRequests parses raw as the servers do, as far as it can, for what
// reading their answers needs (HEAD has no body) and fuzzKnownDifference.
func parseRequests(raw []byte) []parsedRequest {
	br := bufio.NewReaderSize(bytes.NewReader(raw), len(raw)+16) // holds all of raw
	var out []parsedRequest
	afterPOST := false
	for {
		if afterPOST {
			peek, _ := br.Peek(4)
			_, _ = br.Discard(leadingCRorLF(peek))
		}
		// What this server's framing rules say of the head.
		_, _ = br.Peek(1) // fills the buffer with the rest of raw
		b, _ := br.Peek(br.Buffered())
		var refused string
		var info headInfo
		end, _, herr := headEnd(b[:min(len(b), DefaultMaxHeaderBytes)], 0)
		if herr == nil && end > 0 {
			info, herr = scanHead(b[:end])
		}
		if herr != nil {
			refused = herr.msg
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return out
		}
		out = append(out, parsedRequest{req.Method, req.Host, req.ProtoMajor, req.ProtoAtLeast(1, 1), refused})
		if refused != "" {
			return out
		}
		body := req.Body
		if info.chunked {
			body = &chunkedBody{br: br, req: req, maxTrailer: DefaultMaxHeaderBytes}
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			if isBadBody(err) {
				out[len(out)-1].refused = err.Error()
			}
			return out
		}
		afterPOST = req.Method == http.MethodPost
	}
}

type fuzzResult struct {
	answers []answer // final responses, in order
	err     error    // a malformed response, or a deadline reached
}

// fuzzExchange writes raw to addr, half-closes and reads every response.
func fuzzExchange(addr string, raw []byte, reqs []parsedRequest) (res fuzzResult) {
	nc, err := net.DialTimeout("tcp", addr, fuzzDeadline)
	if err != nil {
		return fuzzResult{err: fmt.Errorf("dialing: %w", err)}
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(fuzzDeadline))
	go func() {
		// The server may close before it read everything: errors here
		// show in what it answered.
		if _, err := nc.Write(raw); err == nil {
			_ = nc.(*net.TCPConn).CloseWrite()
		}
	}()
	br := bufio.NewReader(nc)
	for {
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) || isReset(err) {
				return res // the end of the answers
			}
			res.err = fmt.Errorf("waiting for response %d: %w", len(res.answers), err)
			return res
		}
		method := http.MethodGet
		if i := len(res.answers); i < len(reqs) {
			method = reqs[i].method
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			res.err = fmt.Errorf("reading response %d: %w", len(res.answers), err)
			return res
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			res.err = fmt.Errorf("reading body %d: %w", len(res.answers), err)
			return res
		}
		if resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if len(body) != 0 {
				res.err = fmt.Errorf("a %d response has a body", resp.StatusCode)
				return res
			}
			continue // informational
		}
		if !slices.Contains([]string{"HTTP/1.1", "HTTP/1.0"}, resp.Proto) || strings.ContainsAny(resp.Status, "\r\n") {
			res.err = fmt.Errorf("status line %q %q", resp.Proto, resp.Status)
			return res
		}
		res.answers = append(res.answers, answer{resp.StatusCode, string(body)})
		if resp.Close && resp.StatusCode/100 != 2 {
			// Both servers send error bodies even to HEAD, then close:
			// what follows cannot be framed.
			return res
		}
	}
}
