package up

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Backoff of restarts: a crashed process is started again after Min,
// doubling per crash up to Max; once it stays up for Reset the next crash
// waits Min again.
type Backoff struct {
	Min, Max, Reset time.Duration
}

// DefaultBackoff is the restart backoff when Options leave it zero.
var DefaultBackoff = Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second, Reset: 30 * time.Second}

// next returns how long to wait before restarting a process that stayed up
// for up, given the delay the previous crash had set, and the delay for the
// crash after this one: a process that stayed up Reset or longer starts
// over at Min; otherwise each crash doubles the wait up to Max.
func (b Backoff) next(delay, up time.Duration) (wait, after time.Duration) {
	if up >= b.Reset || delay < b.Min {
		delay = b.Min
	}
	return delay, min(delay*2, b.Max)
}

// StopTimeout is how long a process has after SIGTERM before SIGKILL.
const StopTimeout = 15 * time.Second

// ProcessInfo is one process as GET /admin/hitch/processes lists it.
type ProcessInfo struct {
	Name     string    `json:"name"`
	Replica  int       `json:"replica"`
	PID      int       `json:"pid"`
	Address  string    `json:"address,omitempty"` // host:port it serves on
	Health   string    `json:"health"`            // up, down, starting, paused, unregistered
	Restarts int       `json:"restarts"`
	Started  time.Time `json:"started"`
	Role     string    `json:"role"` // service, broker, registry, gateway
}

// process is a supervised child: started, watched, restarted with backoff
// after a crash, stopped with SIGTERM (then SIGKILL) when ctx ends.
type process struct {
	name    string
	replica int
	role    string
	argv    []string // argv[0] is the program
	env     []string
	backoff Backoff
	log     *slog.Logger
	out     io.Writer // the children's output, each line prefixed
	// readyLine parses a stdout line; it returns the address when the line
	// says the process is ready.
	readyLine func(line string) (addr string, ok bool)
	// health is the URL path checked for health on the address.
	health string
	// scheme of the health check: "https" under --secure; "" is http.
	scheme string

	mu       sync.Mutex
	pid      int
	addr     string
	restarts int
	started  time.Time
	running  bool
	paused   bool          // SIGSTOPped through the admin API (pause)
	ready    chan struct{} // closed at the first ready line
	once     sync.Once
}

func (p *process) id() string { return fmt.Sprintf("%s-%d", p.name, p.replica) }

// run supervises the process until ctx ends; it returns once the last
// child has exited.
func (p *process) run(ctx context.Context) {
	delay := p.backoff.Min
	for {
		start := time.Now()
		err := p.once1(ctx)
		if ctx.Err() != nil {
			return
		}
		up := time.Since(start)
		var wait time.Duration
		wait, delay = p.backoff.next(delay, up)
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
		p.log.Warn("hitch up: process exited; restarting", "process", p.id(), "err", err, "up", up.Round(time.Millisecond).String(), "after", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// once1 starts the process once and waits for it to exit (or for ctx to
// end, then stops it).
func (p *process) once1(ctx context.Context) error {
	p.mu.Lock()
	argv := p.argv
	p.mu.Unlock()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = p.env
	cmd.SysProcAttr = sysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	p.mu.Lock()
	p.pid, p.started, p.running, p.addr, p.paused = cmd.Process.Pid, time.Now(), true, "", false
	p.mu.Unlock()
	var copying sync.WaitGroup
	copying.Add(2)
	go func() { defer copying.Done(); p.scan(stdout, true) }()
	go func() { defer copying.Done(); p.scan(stderr, false) }()
	exited := make(chan error, 1)
	go func() {
		copying.Wait() // Wait closes the pipes: read them to the end first
		exited <- cmd.Wait()
	}()
	select {
	case err = <-exited:
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		p.mu.Lock()
		if p.paused { // a stopped process acts on SIGTERM only once continued
			_ = resumeProcess(cmd.Process.Pid)
			p.paused = false
		}
		p.mu.Unlock()
		select {
		case err = <-exited:
		case <-time.After(StopTimeout):
			p.log.Warn("hitch up: process ignored SIGTERM; killing it", "process", p.id(), "pid", cmd.Process.Pid)
			_ = cmd.Process.Kill()
			err = <-exited
		}
	}
	p.mu.Lock()
	p.running, p.paused = false, false
	p.mu.Unlock()
	return err
}

// scan copies a child's output to p.out, each line prefixed with the
// process id, and watches stdout for the ready line.
func (p *process) scan(r io.Reader, isStdout bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := "[" + p.id() + "] "
	for sc.Scan() {
		line := sc.Text()
		if isStdout && p.readyLine != nil {
			if addr, ok := p.readyLine(line); ok {
				p.mu.Lock()
				p.addr = addr
				p.mu.Unlock()
				p.once.Do(func() { close(p.ready) })
			}
		}
		fmt.Fprintln(p.out, prefix+line)
	}
	_, _ = io.Copy(io.Discard, r)
}

// info reports the process, checking its health with client.
func (p *process) info(ctx context.Context, client *http.Client) ProcessInfo {
	p.mu.Lock()
	in := ProcessInfo{Name: p.name, Replica: p.replica, PID: p.pid, Address: p.addr, Restarts: p.restarts, Started: p.started, Role: p.role}
	running, paused := p.running, p.paused
	p.mu.Unlock()
	switch {
	case !running:
		in.Health, in.PID = "down", 0
	case paused:
		in.Health = "paused"
	case in.Address == "":
		in.Health = "starting"
	default:
		scheme := p.scheme
		if scheme == "" {
			scheme = "http"
		}
		in.Health = checkHealth(ctx, client, scheme+"://"+in.Address+p.health)
	}
	return in
}

func checkHealth(ctx context.Context, client *http.Client, url string) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "down"
	}
	resp, err := client.Do(req)
	if err != nil {
		return "down"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "up"
	}
	return "down"
}

// serveReady parses `hitch serve`'s ready line.
func serveReady(line string) (string, bool) {
	// "hitch serve: NAME-R ready on ADDR"
	if !strings.HasPrefix(line, "hitch serve: ") {
		return "", false
	}
	_, addr, ok := strings.Cut(line, " ready on ")
	return strings.TrimSpace(addr), ok
}

// brokerReady parses the broker's listening line and keeps both
// addresses: "switchyard broker: http=ADDR native=ADDR ...".
func brokerReady(line string) (httpAddr, nativeAddr string, ok bool) {
	rest, found := strings.CutPrefix(line, "switchyard broker: ")
	if !found {
		return "", "", false
	}
	for _, f := range strings.Fields(rest) {
		if v, ok := strings.CutPrefix(f, "http="); ok {
			httpAddr = v
		}
		if v, ok := strings.CutPrefix(f, "native="); ok {
			nativeAddr = v
		}
	}
	return httpAddr, nativeAddr, httpAddr != "" && nativeAddr != "" && nativeAddr != "off"
}

// environ is the children's environment.
func environ() []string { return os.Environ() }

// Process faults: the admin API kills (SIGKILL: the supervisor restarts
// it with backoff, as after a crash), pauses (SIGSTOP: it holds its
// connections and answers nothing) or resumes (SIGCONT) a child.
const (
	ActionKill   = "kill"
	ActionPause  = "pause"
	ActionResume = "resume"
)

// errNotRunning is a process fault on a process that has no child now.
var errNotRunning = errors.New("not running")

// fault applies a process fault to p's current child and returns its pid.
func (p *process) fault(action string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running || p.pid <= 0 {
		return 0, errNotRunning
	}
	var err error
	switch action {
	case ActionKill:
		err = killProcess(p.pid)
	case ActionPause:
		if err = pauseProcess(p.pid); err == nil {
			p.paused = true
		}
	case ActionResume:
		if err = resumeProcess(p.pid); err == nil {
			p.paused = false
		}
	default:
		return 0, fmt.Errorf("action %q: expected kill, pause or resume", action)
	}
	if err != nil {
		return 0, fmt.Errorf("%s %s (pid %d): %w", action, p.id(), p.pid, err)
	}
	p.log.Warn("hitch up: process fault", "process", p.id(), "pid", p.pid, "action", action)
	return p.pid, nil
}

// faultHandler serves POST /admin/hitch/processes/{process}/{action}:
// process is NAME-REPLICA ("matching-1") or a NAME (then the running
// replica with the lowest number for kill and pause, the paused one for
// resume); action is kill, pause or resume. It answers 200 {"process",
// "pid", "action"}, 404 for an unknown or not running process, 400 for an
// unknown action.
func faultHandler(procs []*process) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(code int, format string, args ...any) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": fmt.Sprintf(format, args...), "status": code})
		}
		rest := strings.TrimPrefix(r.URL.Path, "/admin/hitch/processes/")
		name, action, ok := strings.Cut(rest, "/")
		if !ok || name == "" || strings.Contains(action, "/") {
			fail(http.StatusNotFound, "%q: expected POST /admin/hitch/processes/{NAME or NAME-REPLICA}/{kill|pause|resume}", r.URL.Path)
			return
		}
		if action != ActionKill && action != ActionPause && action != ActionResume {
			fail(http.StatusBadRequest, "action %q: expected kill, pause or resume", action)
			return
		}
		p := pickProcess(procs, name, action)
		if p == nil {
			fail(http.StatusNotFound, "no running child process %q (expected a service or broker NAME or NAME-REPLICA, as GET /admin/hitch/processes lists them)", name)
			return
		}
		pid, err := p.fault(action)
		if errors.Is(err, errNotRunning) {
			fail(http.StatusNotFound, "process %s is not running", p.id())
			return
		}
		if err != nil {
			fail(http.StatusInternalServerError, "%v", err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"process": p.id(), "name": p.name, "replica": p.replica, "pid": pid, "action": action})
	})
}

// pickProcess finds the process a fault names: NAME-REPLICA exactly, or
// for a NAME the lowest replica in a state the action applies to.
func pickProcess(procs []*process, name, action string) *process {
	for _, p := range procs {
		if p.id() == name {
			return p
		}
	}
	for _, p := range procs {
		if p.name != name {
			continue
		}
		p.mu.Lock()
		fits := p.running && (p.paused == (action == ActionResume))
		p.mu.Unlock()
		if fits {
			return p
		}
	}
	return nil
}
