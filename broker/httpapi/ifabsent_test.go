package httpapi

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// PUT ...?if_absent=1 creates a queue, topic or stream (201) and leaves an
// existing one as it is (200 with its settings untouched), as the native
// Declare frame's if-absent flag does; without it a PUT replaces.
func TestDeclareIfAbsent(t *testing.T) {
	c := newServer(t)
	var q broker.QueueInfo
	if st := c.do("PUT", "/v1/queues/orders?if_absent=1", `{"max_length":10}`, nil, &q); st != 201 || q.Config.MaxLength != 10 {
		t.Fatalf("create: %d %+v", st, q.Config)
	}
	var dlq broker.QueueInfo
	if st := c.do("GET", "/v1/queues/orders.dlq", "", nil, &dlq); st != 200 {
		t.Fatalf("the created queue's dead-letter queue: %d", st)
	}
	q = broker.QueueInfo{}
	if st := c.do("PUT", "/v1/queues/orders?if_absent=true", `{"max_length":99}`, nil, &q); st != 200 || q.Config.MaxLength != 10 {
		t.Fatalf("existing: %d %+v, want 200 and max_length 10 kept", st, q.Config)
	}
	if st := c.do("PUT", "/v1/queues/orders?if_absent=0", `{"max_length":99}`, nil, &q); st != 200 || q.Config.MaxLength != 99 {
		t.Fatalf("if_absent=0 replaces: %d %+v", st, q.Config)
	}

	c.do("PUT", "/v1/queues/audit", "", nil, nil)
	var tp broker.TopicInfo
	if st := c.do("PUT", "/v1/topics/rides?if_absent=1", `{"queues":["orders"]}`, nil, &tp); st != 201 || !slices.Equal(tp.Config.Queues, []string{"orders"}) {
		t.Fatalf("create topic: %d %+v", st, tp.Config)
	}
	tp = broker.TopicInfo{}
	if st := c.do("PUT", "/v1/topics/rides?if_absent=1", `{"queues":["audit"]}`, nil, &tp); st != 200 || !slices.Equal(tp.Config.Queues, []string{"orders"}) {
		t.Fatalf("existing topic: %d %+v, want its bindings kept", st, tp.Config)
	}

	var s broker.StreamInfo
	if st := c.do("PUT", "/v1/streams/payments?if_absent=1", `{"max_age":"1h"}`, nil, &s); st != 201 || s.Config.MaxAge.Std() != time.Hour {
		t.Fatalf("create stream: %d %+v", st, s.Config)
	}
	s = broker.StreamInfo{}
	if st := c.do("PUT", "/v1/streams/payments?if_absent=1", `{"max_age":"2h"}`, nil, &s); st != 200 || s.Config.MaxAge.Std() != time.Hour {
		t.Fatalf("existing stream: %d %+v", st, s.Config)
	}

	// Bad input is refused whether or not the thing exists: the settings
	// are validated before the existence check.
	for _, tc := range []struct {
		path, body, says string
	}{
		{"/v1/queues/orders?if_absent=maybe", "", "if_absent"},
		{"/v1/queues/orders?if_absent=1", `{"visibilty_timeout":"3s"}`, "unknown field"},
		{"/v1/queues/orders?if_absent=1", `{"overflow":"drop"}`, "overflow"},
		{"/v1/queues/new?if_absent=1", `{"overflow":"drop"}`, "overflow"},
		{"/v1/queues/a%00b?if_absent=1", "", "queue name"},
		{"/v1/topics/rides?if_absent=1", `{"queues":["nope"]}`, ""},
		{"/v1/streams/payments?if_absent=2", "", "if_absent"},
	} {
		var e broker.ErrorBody
		st := c.do("PUT", tc.path, tc.body, nil, &e)
		if tc.says == "" {
			// A topic whose queues are missing: refused when it would
			// be created; an existing topic is left alone (200).
			if st != 200 {
				t.Fatalf("PUT %s %s: %d %+v", tc.path, tc.body, st, e)
			}
			continue
		}
		if st != 400 || e.Code != "bad_request" || !strings.Contains(e.Detail, tc.says) {
			t.Fatalf("PUT %s %s: %d %+v, want 400 naming %s", tc.path, tc.body, st, e, tc.says)
		}
	}
	var e broker.ErrorBody
	if st := c.do("PUT", "/v1/topics/fresh?if_absent=1", `{"queues":["nope"]}`, nil, &e); st != 400 || !strings.Contains(e.Detail, `binds queue "nope", which does not exist`) {
		t.Fatalf("new topic bound to a missing queue: %d %+v", st, e)
	}
	if st := c.do("GET", "/v1/topics/fresh", "", nil, nil); st != 404 {
		t.Fatalf("the refused topic exists: %d", st)
	}
}
