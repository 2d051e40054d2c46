package demo

import (
	_ "embed"
	"fmt"
	"strings"
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
