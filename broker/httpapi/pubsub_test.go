package httpapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
)

func TestTopicSSE(t *testing.T) {
	c := newServer(t)
	c.do("PUT", "/v1/queues/audit", "", nil, nil)
	if st := c.do("PUT", "/v1/topics/rides", `{"queues":["audit"]}`, nil, nil); st != 200 {
		t.Fatalf("put topic %d", st)
	}
	c.do("POST", "/v1/topics/rides/messages", "old", nil, nil)
	resp, err := http.Get(c.base + "/v1/topics/rides/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, ": subscribed") {
		t.Fatalf("first line %q", line)
	}
	var res struct {
		ID          uint64 `json:"id"`
		Subscribers int    `json:"subscribers"`
		Queues      int    `json:"queues"`
	}
	if st := c.do("POST", "/v1/topics/rides/messages", "new", map[string]string{"Msg-Header-A": "b"}, &res); st != 201 || res.Subscribers != 1 || res.Queues != 1 {
		t.Fatalf("publish %d %+v", st, res)
	}
	var ev broker.TopicEvent
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if string(ev.Body) != "new" || ev.Headers["a"] != "b" {
		t.Fatalf("event %+v", ev)
	}
	var e errAnswer
	if st := c.do("GET", "/v1/topics/none/events", "", nil, &e); st != 404 {
		t.Fatalf("unknown topic events: %d", st)
	}
}

func TestStreamHTTP(t *testing.T) {
	c := newServer(t)
	if st := c.do("PUT", "/v1/streams/loc", `{"max_age":"24h"}`, nil, nil); st != 200 {
		t.Fatalf("put stream %d", st)
	}
	for _, b := range []string{"a", "b", "c"} {
		var r map[string]uint64
		if st := c.do("POST", "/v1/streams/loc/messages", b, nil, &r); st != 201 || r["offset"] == 0 {
			t.Fatalf("append %d %v", st, r)
		}
	}
	var page broker.ReadPage
	if st := c.do("GET", "/v1/streams/loc/messages?from=2&max=10", "", nil, &page); st != 200 || len(page.Messages) != 2 || page.Next != 4 || string(page.Messages[0].Body) != "b" {
		t.Fatalf("read %d %+v", st, page)
	}
	c.do("GET", "/v1/streams/loc/messages?from=start&max=1", "", nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].Offset != 1 {
		t.Fatalf("from=start %+v", page)
	}
	c.do("GET", "/v1/streams/loc/messages?from=2000-01-01T00:00:00Z", "", nil, &page)
	if len(page.Messages) != 3 {
		t.Fatalf("from=time %+v", page)
	}
	c.do("GET", "/v1/streams/loc/groups/g/fetch?max=2", "", nil, &page)
	if len(page.Messages) != 2 || page.Next != 3 {
		t.Fatalf("fetch %+v", page)
	}
	if st := c.do("POST", "/v1/streams/loc/groups/g/commit", `{"offset":3}`, nil, nil); st != 200 {
		t.Fatalf("commit %d", st)
	}
	c.do("GET", "/v1/streams/loc/groups/g/fetch", "", nil, &page)
	if len(page.Messages) != 1 || string(page.Messages[0].Body) != "c" || page.Next != 4 {
		t.Fatalf("fetch after commit %+v", page)
	}
	var e errAnswer
	for _, bad := range []string{"/v1/streams/loc/messages?from=tomorrow", "/v1/streams/loc/messages?max=0"} {
		if st := c.do("GET", bad, "", nil, &e); st != 400 {
			t.Fatalf("%s: %d", bad, st)
		}
	}
	if st := c.do("POST", "/v1/streams/loc/groups/g/commit", `{}`, nil, &e); st != 400 {
		t.Fatalf("commit without offset: %d", st)
	}
	if st := c.do("GET", "/v1/streams/none/messages", "", nil, &e); st != 404 {
		t.Fatalf("unknown stream: %d", st)
	}
}
