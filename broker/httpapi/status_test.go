package httpapi

import (
	"fmt"
	"testing"

	"github.com/switchyard/switchyard/broker"
)

type statusAnswer struct {
	ID         string `json:"id"`
	Queue      string `json:"queue"`
	State      string `json:"state"`
	Deliveries int    `json:"deliveries"`
	MsgID      string `json:"msg_id"`
	VisibleAt  string `json:"visible_at"`
	Reason     string `json:"reason"`
	MovedTo    string `json:"moved_to"`
}

func TestMessageStatusHTTP(t *testing.T) {
	c := newServer(t)
	c.do("PUT", "/v1/queues/jobs", `{"max_deliveries":1}`, nil, nil)
	var pub broker.PublishAnswer
	if st := c.do("POST", "/v1/queues/jobs/messages", "x", map[string]string{"Msg-Id": "j-1"}, &pub); st != 201 {
		t.Fatalf("publish: %d", st)
	}
	status := func(want string) statusAnswer {
		t.Helper()
		var s statusAnswer
		if st := c.do("GET", "/v1/queues/jobs/messages/"+pub.ID, "", nil, &s); st != 200 || s.State != want || s.ID != pub.ID || s.Queue != "jobs" {
			t.Fatalf("status: %d %+v, want state %s", st, s, want)
		}
		return s
	}
	if s := status("ready"); s.MsgID != "j-1" || s.Deliveries != 0 {
		t.Fatalf("ready: %+v", s)
	}
	var ds []broker.ReceivedMessage
	c.do("POST", "/v1/queues/jobs/receive", "", nil, &ds)
	if s := status("in_flight"); s.Deliveries != 1 || s.VisibleAt == "" {
		t.Fatalf("in flight: %+v", s)
	}
	c.do("POST", "/v1/queues/jobs/ack", fmt.Sprintf(`{"receipts":[%q]}`, ds[0].Receipt), nil, nil)
	status("acked")

	c.do("POST", "/v1/queues/jobs/messages", "y", nil, &pub)
	c.do("POST", "/v1/queues/jobs/receive", "", nil, &ds)
	c.do("POST", "/v1/queues/jobs/nack", fmt.Sprintf(`{"receipts":[%q]}`, ds[0].Receipt), nil, nil)
	if s := status("dead_lettered"); s.Reason != "max_deliveries" || s.MovedTo != "jobs.dlq" {
		t.Fatalf("dead-lettered: %+v", s)
	}

	cases := []struct {
		name, path string
		status     int
		code       string
		state      string
	}{
		{"never published", "/v1/queues/jobs/messages/12345", 200, "", "unknown"},
		{"bad id", "/v1/queues/jobs/messages/abc", 400, "bad_request", ""},
		{"zero id", "/v1/queues/jobs/messages/0", 400, "bad_request", ""},
		{"unknown queue", "/v1/queues/nope/messages/1", 404, "not_found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ans struct {
				statusAnswer
				Code string `json:"code"`
			}
			if st := c.do("GET", tc.path, "", nil, &ans); st != tc.status || ans.Code != tc.code || ans.State != tc.state {
				t.Fatalf("got %d %+v, want %d code %q state %q", st, ans, tc.status, tc.code, tc.state)
			}
		})
	}
}
