package views

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Every answer of the service is about one user (a ride, a receipt,
// earnings) or an error about one: none may be kept by a browser's cache
// or an intermediary, whatever they would otherwise store.
func TestAnswersAreNotStored(t *testing.T) {
	for name, write := range map[string]func(http.ResponseWriter){
		"json":  func(w http.ResponseWriter) { writeJSON(w, http.StatusOK, map[string]int{"fare": 745}) },
		"error": func(w http.ResponseWriter) { writeError(w, http.StatusNotFound, "not_found", "no such ride") },
	} {
		rec := httptest.NewRecorder()
		write(rec)
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", name, got)
		}
	}
}
