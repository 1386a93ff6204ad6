// Package failpoint provides named fault points compiled into jetflow so
// that fault-injection tests can break a real process at an exact place: an
// orchestrator right after it appended a decision, a participant right after
// its external effect, the timer service right after a fire.
//
// A fault point is a call to Hit with a stable name. Fault points are inert
// unless Enable was called with a spec that names them; a disabled Hit is
// one atomic load, so the points cost nothing on the hot path.
//
// Library packages never read the environment. The jetflow binary enables
// the points named in $JETFLOW_FAILPOINTS once, at start-up:
//
//	JETFLOW_FAILPOINTS='orchestrator.after-append=exit@50;participant.after-effect=sleep(3s)'
//
// A spec is a list of name=action separated by ';'. Actions:
//
//	exit         os.Exit(137) at the first hit: the process dies at once,
//	             without running deferred functions or flushing anything,
//	             as under kill -9.
//	exit@N       the same, at the N-th hit of that point (1-based).
//	sleep(D)     sleep for the duration D (time.ParseDuration) at every hit.
//	sleep(D)@N   sleep only at the N-th hit.
//	panic        panic at the first hit; panic@N at the N-th.
//	off          do nothing (the point is still counted).
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ExitCode is the status a process ends with when an exit action fires:
// 128+9, what a shell reports for a process killed by SIGKILL.
const ExitCode = 137

// enabled is set once any point is configured; Hit checks it first.
var enabled atomic.Bool

var (
	mu     sync.RWMutex
	points = map[string]*point{}
)

// exit is os.Exit; unit tests replace it.
var exit = os.Exit

// sleep is time.Sleep; unit tests replace it.
var sleep = time.Sleep

type kind int

const (
	kindOff kind = iota
	kindExit
	kindSleep
	kindPanic
)

// point is one configured fault point.
type point struct {
	name  string
	kind  kind
	at    int64 // 0: every hit; N: only the N-th
	delay time.Duration
	hits  atomic.Int64
}

// Hit marks the fault point name. It does nothing unless the point was
// configured with Enable; then it performs the point's action.
func Hit(name string) {
	if !enabled.Load() {
		return
	}
	hit(name)
}

func hit(name string) {
	mu.RLock()
	p := points[name]
	mu.RUnlock()
	if p == nil {
		return
	}
	n := p.hits.Add(1)
	if p.at != 0 && n != p.at {
		return
	}
	switch p.kind {
	case kindExit:
		fmt.Fprintf(os.Stderr, "failpoint %s: exit %d at hit %d\n", name, ExitCode, n)
		exit(ExitCode)
	case kindSleep:
		fmt.Fprintf(os.Stderr, "failpoint %s: sleep %s at hit %d\n", name, p.delay, n)
		sleep(p.delay)
	case kindPanic:
		panic(fmt.Sprintf("failpoint %s: panic at hit %d", name, n))
	}
}

// Enable configures the fault points of spec (see the package
// documentation), replacing any configured before. An empty spec
// configures none and leaves every point inert. A malformed spec is an
// error and changes nothing.
func Enable(spec string) error {
	parsed, err := parse(spec)
	if err != nil {
		return err
	}
	next := make(map[string]*point, len(parsed))
	for _, p := range parsed {
		next[p.name] = p
	}
	mu.Lock()
	points = next
	mu.Unlock()
	enabled.Store(len(next) > 0)
	return nil
}

// Disable makes every point inert again.
func Disable() {
	enabled.Store(false)
	mu.Lock()
	points = map[string]*point{}
	mu.Unlock()
}

// Hits returns how often the configured point name was hit since Enable,
// 0 for a point that is not configured.
func Hits(name string) int64 {
	mu.RLock()
	defer mu.RUnlock()
	if p := points[name]; p != nil {
		return p.hits.Load()
	}
	return 0
}

// parse checks a spec and returns its points.
func parse(spec string) ([]*point, error) {
	var out []*point
	seen := map[string]bool{}
	for _, item := range strings.Split(spec, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, action, ok := strings.Cut(item, "=")
		name, action = strings.TrimSpace(name), strings.TrimSpace(action)
		if !ok || name == "" || action == "" {
			return nil, fmt.Errorf("failpoint: %q: want name=action", item)
		}
		if seen[name] {
			return nil, fmt.Errorf("failpoint: %s configured twice", name)
		}
		seen[name] = true
		p, err := parseAction(name, action)
		if err != nil {
			return nil, fmt.Errorf("failpoint: %s: %w", name, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseAction(name, action string) (*point, error) {
	p := &point{name: name}
	if base, n, ok := strings.Cut(action, "@"); ok {
		at, err := strconv.ParseInt(n, 10, 64)
		if err != nil || at < 1 {
			return nil, fmt.Errorf("%q: the hit after @ must be a positive integer", action)
		}
		p.at, action = at, base
	}
	switch {
	case action == "exit":
		p.kind = kindExit
	case action == "panic":
		p.kind = kindPanic
	case action == "off":
		p.kind = kindOff
	case strings.HasPrefix(action, "sleep(") && strings.HasSuffix(action, ")"):
		d, err := time.ParseDuration(action[len("sleep(") : len(action)-1])
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q: sleep needs a duration such as sleep(250ms)", action)
		}
		p.kind, p.delay = kindSleep, d
	default:
		return nil, errors.New("unknown action " + strconv.Quote(action) + " (want exit, exit@N, sleep(D), sleep(D)@N, panic, off)")
	}
	return p, nil
}
