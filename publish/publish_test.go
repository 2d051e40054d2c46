package publish

import (
	"errors"
	"fmt"
	"testing"

	"github.com/switchyard/switchyard/config"
)

// fieldPaths returns the key path of every joined FieldError in err.
func fieldPaths(t *testing.T, err error) []string {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	var paths []string
	for _, e := range errs {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a FieldError", e)
		}
		paths = append(paths, fe.Path)
	}
	return paths
}

func TestConfigErrorsAreFieldErrors(t *testing.T) {
	got := fieldPaths(t, Config{Headers: []string{"X-Ok", "X A", ""}}.Validate())
	if want := "[queue headers[1] headers[2]]"; fmt.Sprint(got) != want {
		t.Fatalf("paths %v, want %s", got, want)
	}
	for _, u := range []string{"", "ftp://b:1", "http://", "http://h:0", "http://h:1?q", "http://u@h:1"} {
		if got := fieldPaths(t, BrokerConfig{URL: u}.Validate()); fmt.Sprint(got) != "[url]" {
			t.Errorf("url %q: paths %v", u, got)
		}
	}
	if err := (BrokerConfig{URL: "https://b.example:7401/api"}).Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Queue: "a b"}, Options{Broker: BrokerConfig{URL: "http://b:1"}})
	if got := fieldPaths(t, err); fmt.Sprint(got) != "[queue]" {
		t.Fatalf("bad queue name: paths %v", got)
	}
	p, err := New(Config{Queue: "orders"}, Options{Broker: BrokerConfig{URL: "http://b:1"}, Base: "/orders/"})
	if err != nil || p.StatusPrefix() != "/orders/_status/" || p.timeout != DefaultTimeout || p.maxBody != DefaultMaxBody {
		t.Fatalf("New: %v %+v", err, p)
	}
}

// Broker credentials come from env: or file:, never inline; TLS files
// need an https:// broker.
func TestBrokerCredentialErrors(t *testing.T) {
	got := fieldPaths(t, BrokerConfig{URL: "http://b:1", User: "gw", Password: "hunter2", Token: "abc", CA: "ca.pem"}.Validate())
	if want := "[password token token ca]"; fmt.Sprint(got) != want {
		t.Fatalf("paths %v, want %s", got, want)
	}
	if err := (BrokerConfig{URL: "https://b:1", User: "gw", Password: "env:GW_PASS", CA: "ca.pem"}).Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Queue: "q"}, Options{Broker: BrokerConfig{URL: "http://b:1", Token: "env:SY_NOT_SET_ANYWHERE"}})
	if err == nil || err.Error() != `broker.token: environment variable "SY_NOT_SET_ANYWHERE" is not set` {
		t.Fatalf("unset token variable: %v", err)
	}
}
