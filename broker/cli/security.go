package cli

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/switchyard/switchyard/broker/client"
)

// Environment variables with the credentials of a broker with users. A
// password is never a flag (it would show in ps and the shell history).
const (
	EnvToken    = "SWITCHYARD_BROKER_TOKEN"
	EnvUser     = "SWITCHYARD_BROKER_USER"
	EnvPassword = "SWITCHYARD_BROKER_PASSWORD"
	EnvCA       = "SWITCHYARD_BROKER_CA"
)

// securityOpts are the flags of credentials and TLS.
type securityOpts struct {
	user, passwordFile, tokenFile string
	ca, cert, key                 string
}

func securityFlags(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.sec.user, "user", "", "log in as this `user` (password from $"+EnvPassword+" or --password-file; env "+EnvUser+")")
	fs.StringVar(&e.sec.passwordFile, "password-file", "", "read the password from this `file` (first line)")
	fs.StringVar(&e.sec.tokenFile, "token-file", "", "read a bearer token from this `file` (env "+EnvToken+" holds one directly)")
	fs.StringVar(&e.sec.ca, "tls-ca", "", "PEM `file` of the CA that signed the broker's certificate, for https:// (env "+EnvCA+")")
	fs.StringVar(&e.sec.cert, "tls-cert", "", "PEM client certificate `file` for mTLS (with --tls-key)")
	fs.StringVar(&e.sec.key, "tls-key", "", "PEM private key `file` of --tls-cert")
}

// security resolves the credentials (flags, then the environment) and the
// TLS config (nil: the defaults of https://).
func (e *env) security() (client.Credentials, *tls.Config, error) {
	var c client.Credentials
	o := e.sec
	switch {
	case o.tokenFile != "":
		tok, err := firstLine(o.tokenFile)
		if err != nil {
			return c, nil, fmt.Errorf("--token-file: %w", err)
		}
		c.Token = tok
	case o.user == "" && os.Getenv(EnvToken) != "":
		c.Token = os.Getenv(EnvToken)
	default:
		c.User = o.user
		if c.User == "" {
			c.User = os.Getenv(EnvUser)
		}
		if o.passwordFile != "" {
			pw, err := firstLine(o.passwordFile)
			if err != nil {
				return c, nil, fmt.Errorf("--password-file: %w", err)
			}
			c.Password = pw
		} else {
			c.Password = os.Getenv(EnvPassword)
		}
		if c.User != "" && c.Password == "" {
			return c, nil, fmt.Errorf("user %q has no password: set $%s or --password-file", c.User, EnvPassword)
		}
		if c.User == "" && c.Password != "" {
			return c, nil, fmt.Errorf("a password without a user: set --user or $%s", EnvUser)
		}
	}
	ca := o.ca
	if ca == "" {
		ca = os.Getenv(EnvCA)
	}
	if ca == "" && o.cert == "" && o.key == "" {
		return c, nil, nil
	}
	if !strings.HasPrefix(e.base, "https://") {
		return c, nil, errors.New("--tls-ca, --tls-cert and --tls-key need an https:// --server")
	}
	tc, err := client.LoadTLS(ca, o.cert, o.key, "")
	return c, tc, err
}

func firstLine(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: empty first line", file)
	}
	return line, nil
}
