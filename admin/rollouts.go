package admin

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/rollout"
)

// RolloutBackend is the optional part of a Backend that runs rollouts
// (package rollout). Without it GET /admin/rollouts answers an empty list
// and the other rollout endpoints 404.
type RolloutBackend interface {
	// Rollouts returns every upstream's latest rollout.
	Rollouts() []rollout.Status
	// Rollout returns one upstream's (ErrNotFound: no such upstream or
	// no rollout).
	Rollout(upstream string) (rollout.Status, error)
	// StartRollout starts a rollout of a validated spec (ErrNotFound:
	// unknown upstream; ErrConflict: one is running; a *rollout.FieldError:
	// the spec does not fit the upstream).
	StartRollout(spec rollout.Spec) (rollout.Status, error)
	// RolloutAction applies promote (a canary to its next step, other
	// strategies to the end), promote-full, rollback, pause, resume or abort
	// (ErrConflict when the rollout's state does not allow it).
	RolloutAction(upstream, action string) (rollout.Status, error)
}

// RolloutsPageMax is the largest page of GET /admin/rollouts and the page
// a request without ?limit= gets (every rollout, as before pages, for up
// to this many upstreams).
const RolloutsPageMax = 1000

// ErrConflict is returned (wrapped) by a Backend for an operation the
// current state refuses (a rollout already running, one already ended).
var ErrConflict = errors.New("conflict")

// rolloutRoutes adds the rollout endpoints:
//
//	GET    /admin/rollouts                       {"rollouts": [Status, ...]} by upstream, in cursor pages (Link rel="next", ETag)
//	POST   /admin/rollouts                       start: a rollout.Spec; 201 with the Status
//	GET    /admin/rollouts/{upstream}            one Status
//	POST   /admin/rollouts/{upstream}/promote    a canary to its next step; others (and ?full=true) end promoted
//	POST   /admin/rollouts/{upstream}/rollback   the stable set serves everything again
//	POST   /admin/rollouts/{upstream}/pause      hold at the current step
//	POST   /admin/rollouts/{upstream}/resume     continue (the step's window restarts)
//	DELETE /admin/rollouts/{upstream}            abort (as a rollback, marked aborted)
func rolloutRoutes(mux *http.ServeMux, b Backend) {
	rb, _ := b.(RolloutBackend)
	mux.HandleFunc("GET /admin/rollouts", func(w http.ResponseWriter, r *http.Request) {
		p, err := httpx.ParsePage(r, "rollout", RolloutsPageMax, RolloutsPageMax)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		list := []rollout.Status{}
		if rb != nil {
			list = slices.Clone(rb.Rollouts())
		}
		// One rollout per upstream, listed by upstream name (the backend's
		// order is not promised stable, so pages are cut from this one).
		slices.SortFunc(list, func(a, b rollout.Status) int { return strings.Compare(a.Upstream, b.Upstream) })
		list = slices.CompactFunc(list, func(a, b rollout.Status) bool { return a.Upstream == b.Upstream })
		start, end, next := httpx.PageRange(len(list), func(i int) string { return list[i].Upstream }, p)
		httpx.SetNextLink(w, r, "rollout", next, p.Limit)
		writeTagged(w, r, map[string]any{"rollouts": list[start:end]})
	})
	mux.HandleFunc("POST /admin/rollouts", func(w http.ResponseWriter, r *http.Request) {
		if rb == nil {
			writeError(w, http.StatusNotFound, "not_found", "this gateway runs no rollouts")
			return
		}
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rollout.MaxSpecBytes))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("body: reading: %v (at most %d bytes)", err, rollout.MaxSpecBytes))
			return
		}
		spec, err := rollout.ParseSpec(data)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		st, err := rb.StartRollout(spec)
		if err != nil {
			writeRolloutError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, st)
	})
	mux.HandleFunc("GET /admin/rollouts/{upstream}", func(w http.ResponseWriter, r *http.Request) {
		if rb == nil {
			writeError(w, http.StatusNotFound, "not_found", "this gateway runs no rollouts")
			return
		}
		st, err := rb.Rollout(r.PathValue("upstream"))
		if err != nil {
			writeRolloutError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	action := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if rb == nil {
				writeError(w, http.StatusNotFound, "not_found", "this gateway runs no rollouts")
				return
			}
			act := name
			if name == "promote" {
				switch full := r.URL.Query().Get("full"); full {
				case "", "false", "0":
				case "true", "1":
					act = "promote-full"
				default:
					writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("full: invalid value %q: expected true or false", clipQuery(full)))
					return
				}
			}
			st, err := rb.RolloutAction(r.PathValue("upstream"), act)
			if err != nil {
				writeRolloutError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, st)
		}
	}
	for _, a := range []string{"promote", "rollback", "pause", "resume"} {
		mux.HandleFunc("POST /admin/rollouts/{upstream}/"+a, action(a))
	}
	mux.HandleFunc("DELETE /admin/rollouts/{upstream}", action("abort"))
}

func writeRolloutError(w http.ResponseWriter, err error) {
	var fe *rollout.FieldError
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	default:
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	}
}

func clipQuery(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
