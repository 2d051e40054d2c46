package sybroker

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/switchyard/switchyard/broker/client"
)

// urlOptions reads a switchyard URL's credentials and TLS settings:
//
//	switchyard://USER:PASSWORD@HOST:PORT          log in with a password
//	switchyard://HOST:PORT?token_env=NAME         a token from $NAME
//	switchyard://HOST:PORT?token_file=PATH        a token from a file
//	...?tls=1&ca=FILE&cert=FILE&key=FILE&server_name=NAME
//
// tls=1 (implied by ca, cert or key) speaks TLS; ca verifies the broker
// (default the system's roots); cert and key are a client certificate,
// which logs in by itself when no password or token is given. Unknown
// parameters are errors. The password never appears in errors (they show
// the URL redacted).
func urlOptions(u *url.URL) (client.Options, error) {
	var o client.Options
	q := u.Query()
	var unknown []string
	for k := range q {
		switch k {
		case "token_env", "token_file", "tls", "ca", "cert", "key", "server_name":
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return o, fmt.Errorf("unknown parameter %q: expected token_env, token_file, tls, ca, cert, key or server_name", unknown[0])
	}
	if u.User != nil {
		pw, ok := u.User.Password()
		if u.User.Username() == "" || !ok {
			return o, errors.New("credentials in the URL are USER:PASSWORD@ (for a token use token_env or token_file)")
		}
		o.Credentials = client.Credentials{User: u.User.Username(), Password: pw}
	}
	switch {
	case q.Get("token_env") != "" && q.Get("token_file") != "":
		return o, errors.New("token_env or token_file, not both")
	case q.Get("token_env") != "":
		v := os.Getenv(q.Get("token_env"))
		if v == "" {
			return o, fmt.Errorf("token_env: environment variable %q is not set", q.Get("token_env"))
		}
		o.Credentials.Token = v
	case q.Get("token_file") != "":
		b, err := os.ReadFile(q.Get("token_file"))
		if err != nil {
			return o, fmt.Errorf("token_file: %v", err)
		}
		o.Credentials.Token = strings.TrimRight(string(b), "\r\n")
	}
	if o.Credentials.Token != "" && u.User != nil {
		return o, errors.New("a token or USER:PASSWORD@, not both")
	}
	useTLS := q.Get("ca") != "" || q.Get("cert") != "" || q.Get("key") != ""
	switch q.Get("tls") {
	case "", "0", "false":
	case "1", "true":
		useTLS = true
	default:
		return o, fmt.Errorf("tls=%q: expected 1 or true", q.Get("tls"))
	}
	if useTLS {
		tc, err := client.LoadTLS(q.Get("ca"), q.Get("cert"), q.Get("key"), q.Get("server_name"))
		if err != nil {
			return o, err
		}
		o.TLS = tc
	}
	return o, nil
}
