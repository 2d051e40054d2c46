package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// runEdge is `switchyard edge purge|push|stats|inspect`: the edge
// caches' admin API from the command line.
func runEdge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("edge", "purge|push|stats|inspect --admin HOST:PORT [--cache NAME] [--url U | --prefix P | --tag T] [--soft] [--file F --ttl D -H 'Name: value']",
		"Operate a gateway's edge caches through its admin API:\n"+
			"  purge    remove (or with --soft, mark stale) entries by --url, --prefix or --tag\n"+
			"  push     publish --file (- for stdin) as the response to a GET of --url, with\n"+
			"           --ttl, --status and -H headers (Content-Type, Cache-Control, Surrogate-Key ...)\n"+
			"  stats    print each cache's counters\n"+
			"  inspect  print the entries stored for --url\n"+
			"With admin_auth on the gateway, the token comes from $SWITCHYARD_ADMIN_TOKEN.", stderr)
	admin := fs.String("admin", "127.0.0.1:9901", "the gateway's admin address: HOST:PORT or http(s)://HOST:PORT")
	cache := fs.String("cache", "edge", "the cache's name in the caches block")
	u := fs.String("url", "", "a target URL (http://host/path?query)")
	prefix := fs.String("prefix", "", "a URI prefix (host/path-prefix) to purge")
	tag := fs.String("tag", "", "a Surrogate-Key / Cache-Tag tag to purge")
	soft := fs.Bool("soft", false, "purge softly: mark stale instead of removing")
	file := fs.String("file", "", "push: the object's body (- for stdin)")
	ttl := fs.String("ttl", "", "push: freshness in the cache (e.g. 10m); without it the object needs Cache-Control: max-age")
	status := fs.Int("status", 0, "push: the stored status (default 200)")
	var headers pushHeaders
	fs.Var(&headers, "H", "push: a header stored with the object, 'Name: value' (repeatable)")
	var verb string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if verb == "" && fs.NArg() > 0 {
		// The command after the flags: switchyard edge --admin A stats.
		verb = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:], stdout); err != nil {
			return err
		}
	}
	if verb == "" {
		fmt.Fprintln(stderr, "switchyard edge: missing command: expected purge, push, stats or inspect")
		fs.Usage()
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchyard edge: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	// --admin is HOST:PORT; a URL (as curl takes it) works too.
	base, err := adminBase("--admin", *admin)
	if err != nil {
		fmt.Fprintf(stderr, "switchyard edge: %v\n", err)
		return errUsage
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var req *http.Request
	switch verb {
	case "purge":
		n := 0
		for _, s := range []string{*u, *prefix, *tag} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			fmt.Fprintln(stderr, "switchyard edge purge: give exactly one of --url, --prefix and --tag")
			return errUsage
		}
		body, _ := json.Marshal(map[string]any{"url": *u, "prefix": *prefix, "tag": *tag, "soft": *soft})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+"/admin/caches/"+url.PathEscape(*cache)+"/purge", bytes.NewReader(body))
	case "push":
		if *u == "" || *file == "" {
			fmt.Fprintln(stderr, "switchyard edge push: --url and --file are required")
			return errUsage
		}
		var body []byte
		if *file == "-" {
			body, err = io.ReadAll(edgeStdin)
		} else {
			body, err = os.ReadFile(*file)
		}
		if err != nil {
			return fmt.Errorf("reading the object: %w", err)
		}
		q := url.Values{"url": {*u}}
		if *ttl != "" {
			q.Set("ttl", *ttl)
		}
		if *status != 0 {
			q.Set("status", strconv.Itoa(*status))
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, base+"/admin/caches/"+url.PathEscape(*cache)+"/objects?"+q.Encode(), bytes.NewReader(body))
		if err == nil {
			for _, h := range headers {
				req.Header.Add(h[0], h[1])
			}
		}
	case "stats":
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"/admin/caches", nil)
	case "inspect":
		if *u == "" {
			fmt.Fprintln(stderr, "switchyard edge inspect: --url is required")
			return errUsage
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"/admin/caches/"+url.PathEscape(*cache)+"/entries?url="+url.QueryEscape(*u), nil)
	default:
		fmt.Fprintf(stderr, "switchyard edge: expected purge, push, stats or inspect, got %q\n", verb)
		fs.Usage()
		return errUsage
	}
	if err != nil {
		return fmt.Errorf("building the request: %w", err)
	}
	resp, err := client.Do(withAdminToken(req))
	if err != nil {
		return fmt.Errorf("asking the admin API at %s: %w", *admin, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the admin API's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("admin API answered %s", resp.Status)
	}
	_, err = stdout.Write(out)
	return err
}

// edgeStdin is what `edge push --file -` reads (a test replaces it).
var edgeStdin io.Reader = os.Stdin

// pushHeaders collects repeated -H 'Name: value' flags.
type pushHeaders [][2]string

func (h *pushHeaders) String() string { return "" }

func (h *pushHeaders) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
		return fmt.Errorf("expected 'Name: value', got %q", s)
	}
	*h = append(*h, [2]string{name, value})
	return nil
}
