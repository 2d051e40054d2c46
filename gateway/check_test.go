package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckCatchesWhatCannotStart: --check must refuse every config that
// would fail at start for a reason knowable without binding, naming
// file:line:column and the key path.
func TestCheckCatchesWhatCannotStart(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "junk.pem")
	writeConfig(t, notPEM, "not a certificate\n")
	unreadable := filepath.Join(dir, "secret.key")
	writeConfig(t, unreadable, "x")
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	base := "listen: 127.0.0.1:0\nupstreams:\n  a:\n    targets: [{ address: 127.0.0.1:9 }]\nroutes:\n  - upstream: a\n"
	for name, tc := range map[string]struct {
		cfg  string
		want []string
	}{
		"missing certificate": {base + "tls: { cert: " + missing + ", key: " + notPEM + " }\n",
			[]string{":7:1: tls", "missing.pem"}},
		"certificate not PEM": {base + "tls:\n  cert: " + notPEM + "\n  key: " + notPEM + "\n",
			[]string{":7:1: tls", "loading certificate"}},
		"missing JWT public key": {base + "auth:\n  jwt:\n    algorithms: [RS256]\n    public_keys:\n      - file:" + missing + "\n",
			[]string{":11:9: auth.jwt.public_keys[0]", "missing.pem"}},
		"missing JWT secret file": {base + "auth:\n  jwt:\n    algorithms: [HS256]\n    secret: file:" + missing + "\n",
			[]string{":10:5: auth.jwt.secret", "missing.pem"}},
		"access log in a missing directory": {base + "access_log: " + filepath.Join(dir, "no", "such", "dir", "access.log") + "\n",
			[]string{":7:1: access_log", "no such file or directory"}},
		"access log is a directory": {base + "access_log: " + dir + "\n",
			[]string{":7:1: access_log", "directory"}},
		"port out of range": {strings.Replace(base, "127.0.0.1:0", "127.0.0.1:99999", 1),
			[]string{":1:1: listen", "0 to 65535"}},
		"every problem at once": {strings.Replace(base, "127.0.0.1:0", "127.0.0.1:18080", 1) + "admin: 127.0.0.1:18080\ntls: { cert: " + missing + ", key: " + missing + " }\n",
			[]string{":7:1: admin", "same address", ":8:1: tls", "missing.pem"}},
		"listen equals admin": {strings.Replace(base, "127.0.0.1:0", "127.0.0.1:18080", 1) + "admin: 127.0.0.1:18080\n",
			[]string{":7:1: admin", "same address"}},
		// balance.Config.Validate joins every problem; each must reach
		// the user at its own key, not only the first one.
		"every balance problem": {strings.Replace(base, "    targets:", "    balance: consistent_hash\n    virtual_nodes: 20000\n    load_factor: 0.5\n    balance_fallback: bogus\n    targets:", 1),
			[]string{":5:5: upstreams.a.virtual_nodes", "1 to 10000", ":6:5: upstreams.a.load_factor", "greater than 1", ":7:5: upstreams.a.balance_fallback", `"bogus"`}},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gw.yaml")
			writeConfig(t, path, tc.cfg)
			err := Check(path)
			if err == nil {
				t.Fatal("--check said ok")
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if os.Getuid() != 0 { // root reads any file
		path := filepath.Join(t.TempDir(), "gw.yaml")
		writeConfig(t, path, base+"tls: { cert: "+unreadable+", key: "+unreadable+" }\n")
		if err := Check(path); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable certificate: err = %v", err)
		}
	}
}
