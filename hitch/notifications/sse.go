package notifications

import (
	"net/http"
	"time"
)

// sseWriter writes SSE frames to a response with a write deadline per
// write, so a client that stops reading is dropped after WriteTimeout.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
}

// flush sends what was buffered, within the write timeout.
func (sw *sseWriter) flush() error {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	if len(sw.buf) > 0 {
		if _, err := sw.w.Write(sw.buf); err != nil {
			return err
		}
		sw.buf = sw.buf[:0]
	}
	return sw.rc.Flush()
}

// note appends one event: "id:", "event:" and one "data:" line (Data is
// JSON on one line; ids are checked by sseID, names are constants).
func (sw *sseWriter) note(n Note) {
	sw.buf = append(sw.buf, "id: "...)
	sw.buf = append(sw.buf, n.ID...)
	sw.buf = append(sw.buf, "\nevent: "...)
	sw.buf = append(sw.buf, n.Event...)
	sw.buf = append(sw.buf, "\ndata: "...)
	sw.buf = append(sw.buf, n.Data...)
	sw.buf = append(sw.buf, "\n\n"...)
}

// serveSSE streams the caller's notifications as Server-Sent Events.
func (s *Service) serveSSE(w http.ResponseWriter, r *http.Request) {
	who, ok := caller(w, r)
	if !ok {
		return
	}
	c, replay, ok := s.hub.join(who.ID, lastEventID(r), s.cfg.MaxClients)
	if !ok {
		s.busy(w)
		return
	}
	defer s.hub.leave(c)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout}
	// retry: how long a browser waits before reconnecting; the comment
	// makes the first flush carry a body so intermediaries pass the head on.
	sw.buf = append(sw.buf, "retry: 2000\n: hitch notifications\n\n"...)
	for _, n := range replay {
		sw.note(n)
	}
	if sw.flush() != nil {
		return
	}
	beat := time.NewTicker(s.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case n := <-c.ch:
			sw.note(n)
			for more := true; more; { // take what queued up in one write
				select {
				case n := <-c.ch:
					sw.note(n)
				default:
					more = false
				}
			}
		case <-beat.C:
			sw.buf = append(sw.buf, ": heartbeat\n\n"...)
		case <-c.kick:
			return // too slow: the client reconnects with Last-Event-ID
		case <-r.Context().Done():
			return
		}
		if sw.flush() != nil {
			return
		}
	}
}
