package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/internal/flaghint"
)

// runSLO is `switchyard slo rules`: the gateway config's SLOs as
// Prometheus recording and alerting rules.
func runSLO(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("slo", "rules --config FILE [--out FILE]",
		"Write the Prometheus recording and alerting rules equivalent to the slos: of a gateway\n"+
			"config (as Sloth and Pyrra do), over the gateway's own request metrics; load them\n"+
			"into a Prometheus that scrapes the gateway's /metrics. Check them with\n"+
			"`promtool check rules FILE`.\n"+
			"  rules  write the rules (to stdout, or to --out)", stderr)
	cfgPath := fs.String("config", "", "path to the gateway's YAML config (required)")
	out := fs.String("out", "", "write the rules to this file instead of stdout")
	var verb string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if verb == "" && fs.NArg() > 0 {
		verb = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:], stdout); err != nil {
			return err
		}
	}
	switch {
	case verb == "":
		fmt.Fprintln(stderr, "switchyard slo: missing command: expected rules")
		fs.Usage()
		return errUsage
	case verb != "rules":
		hint := ""
		if s := flaghint.Closest(verb, []string{"rules"}); s != "" {
			hint = fmt.Sprintf(": did you mean %q?", s)
		}
		fmt.Fprintf(stderr, "switchyard slo: unknown command %q%s (expected rules)\n", verb, hint)
		fs.Usage()
		return errUsage
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "switchyard slo: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	case *cfgPath == "":
		fmt.Fprintln(stderr, "switchyard slo rules: --config FILE is required")
		fs.Usage()
		return errUsage
	}
	cfg, err := gateway.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	rules, err := cfg.SLORules()
	if err != nil {
		return err
	}
	body, err := rules.Marshal()
	if err != nil {
		return fmt.Errorf("writing rules: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Prometheus rules for the SLOs of %s, written by `switchyard slo rules`.\n", filepath.Base(*cfgPath))
	fmt.Fprintf(&b, "# They read %s and %s from the gateway's /metrics; regenerate them when the slos change.\n",
		gateway.SLOMetricNames().Requests, gateway.SLOMetricNames().Duration)
	b.Write(body)
	if *out == "" {
		_, err := stdout.Write(b.Bytes())
		return err
	}
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing rules: %w", err)
	}
	fmt.Fprintf(stderr, "wrote %d rule groups to %s\n", len(rules.Groups), *out)
	return nil
}
