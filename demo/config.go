package demo

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"text/template"
)

//go:embed gateway.yaml.tmpl
var configTemplate string

// ConfigParams fill the demo gateway config.
type ConfigParams struct {
	Listen    string   // gateway address
	Admin     string   // admin API address
	AccessLog string   // stdout, stderr, off or a path
	Backends  []string // demo backend addresses
}

// Config renders the demo gateway config.
func Config(p ConfigParams) (string, error) {
	t, err := template.New("demo").Parse(configTemplate)
	if err != nil {
		return "", fmt.Errorf("parsing demo config template: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, p); err != nil {
		return "", fmt.Errorf("rendering demo config: %w", err)
	}
	return b.String(), nil
}

// PortError explains a demo address that cannot be listened on: which
// port, given by which flag, and what to do. It returns err unchanged when
// the address is not in use (or err is nil).
func PortError(err error, flag, addr string) error {
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	host, port, _ := net.SplitHostPort(addr)
	if host == "" {
		host = "127.0.0.1"
	}
	return fmt.Errorf("port %s (%s %s) is already in use, perhaps by another switchyard demo: stop what listens there, "+
		"or choose another port with %s, e.g. %s %s (port 0 picks any free port)",
		port, flag, addr, flag, flag, net.JoinHostPort(host, "0"))
}

// CheckFree reports (with PortError) whether addr can be listened on now.
func CheckFree(flag, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if pe := PortError(err, flag, addr); pe != err {
			return pe
		}
		return fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	return ln.Close()
}
