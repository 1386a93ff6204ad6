package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// fake replaces exit and sleep for the duration of a test and records what
// the points did.
type fake struct {
	exits  []int
	sleeps []time.Duration
}

func install(t *testing.T) *fake {
	t.Helper()
	f := &fake{}
	exit = func(code int) { f.exits = append(f.exits, code) }
	sleep = func(d time.Duration) { f.sleeps = append(f.sleeps, d) }
	t.Cleanup(func() {
		exit, sleep = os.Exit, time.Sleep
		Disable()
	})
	return f
}

func TestInertByDefault(t *testing.T) {
	f := install(t)
	for i := 0; i < 10; i++ {
		Hit("orchestrator.after-append")
	}
	if len(f.exits) != 0 || Hits("orchestrator.after-append") != 0 {
		t.Fatalf("a point fired without Enable: exits %v", f.exits)
	}
	if err := Enable(""); err != nil {
		t.Fatal(err)
	}
	if enabled.Load() {
		t.Fatal("an empty spec enabled the points")
	}
}

func TestExitAtNthHit(t *testing.T) {
	f := install(t)
	if err := Enable("a=exit@3; b=sleep(250ms)"); err != nil {
		t.Fatal(err)
	}
	Hit("a")
	Hit("a")
	Hit("other") // not configured: nothing
	if len(f.exits) != 0 {
		t.Fatalf("exited before the 3rd hit: %v", f.exits)
	}
	Hit("a")
	if len(f.exits) != 1 || f.exits[0] != ExitCode {
		t.Fatalf("exits %v, want [%d]", f.exits, ExitCode)
	}
	Hit("a") // past the N-th hit: nothing more
	if len(f.exits) != 1 || Hits("a") != 4 {
		t.Fatalf("exits %v, hits %d", f.exits, Hits("a"))
	}
	Hit("b")
	Hit("b")
	if len(f.sleeps) != 2 || f.sleeps[0] != 250*time.Millisecond {
		t.Fatalf("sleeps %v", f.sleeps)
	}
}

func TestExitAtFirstHitAndSleepAtN(t *testing.T) {
	f := install(t)
	if err := Enable("x=exit;y=sleep(1s)@2;z=off"); err != nil {
		t.Fatal(err)
	}
	Hit("y")
	Hit("y")
	Hit("y")
	Hit("z")
	if len(f.sleeps) != 1 || f.sleeps[0] != time.Second {
		t.Fatalf("sleeps %v, want one of 1s", f.sleeps)
	}
	Hit("x")
	if len(f.exits) != 1 {
		t.Fatalf("exits %v", f.exits)
	}
	if Hits("z") != 1 {
		t.Fatalf("off point not counted")
	}
}

func TestPanic(t *testing.T) {
	install(t)
	if err := Enable("p=panic@2"); err != nil {
		t.Fatal(err)
	}
	Hit("p")
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "failpoint p") {
			t.Fatalf("recovered %v", r)
		}
	}()
	Hit("p")
	t.Fatal("no panic at the 2nd hit")
}

func TestEnableReplacesAndDisable(t *testing.T) {
	f := install(t)
	if err := Enable("a=exit"); err != nil {
		t.Fatal(err)
	}
	if err := Enable("b=exit"); err != nil {
		t.Fatal(err)
	}
	Hit("a")
	if len(f.exits) != 0 {
		t.Fatal("a point of an earlier spec is still configured")
	}
	Disable()
	Hit("b")
	if len(f.exits) != 0 {
		t.Fatal("Disable left a point active")
	}
}

func TestBadSpecs(t *testing.T) {
	install(t)
	if err := Enable("keep=exit@2"); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{
		"noaction", "=exit", "a=", "a=explode", "a=exit@0", "a=exit@x", "a=exit@-1",
		"a=sleep(soon)", "a=sleep(-1s)", "a=sleep(1s", "a=exit;a=exit",
	} {
		if err := Enable(spec); err == nil {
			t.Errorf("Enable(%q) accepted", spec)
		}
	}
	// A refused spec changes nothing.
	if _, ok := points["keep"]; !ok || !enabled.Load() {
		t.Fatal("a refused spec changed the configured points")
	}
}

// TestExitKillsTheProcess runs this test binary as a child that enables a
// point and hits it: the child must die at once with ExitCode, without
// running its deferred code.
func TestExitKillsTheProcess(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		if err := Enable(os.Getenv("FAILPOINT_SPEC")); err != nil {
			os.Exit(3)
		}
		defer os.Stdout.WriteString("deferred code ran\n")
		for i := 1; i <= 5; i++ {
			os.Stdout.WriteString("hit\n")
			Hit("child.point")
		}
		os.Stdout.WriteString("survived\n")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestExitKillsTheProcess$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", "FAILPOINT_SPEC=child.point=exit@3")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitCode {
		t.Fatalf("child: %v, want exit status %d; output:\n%s", err, ExitCode, out)
	}
	if got := strings.Count(string(out), "hit\n"); got != 3 || strings.Contains(string(out), "survived") || strings.Contains(string(out), "deferred") {
		t.Fatalf("child output:\n%s", out)
	}
	if !strings.Contains(string(ee.Stderr), "failpoint child.point: exit 137 at hit 3") {
		t.Fatalf("child stderr: %s", ee.Stderr)
	}
}

// BenchmarkHitDisabled is the cost of a fault point in production: one
// atomic load.
func BenchmarkHitDisabled(b *testing.B) {
	Disable()
	for i := 0; i < b.N; i++ {
		Hit("orchestrator.after-append")
	}
}

// BenchmarkHitEnabledOther is the cost when other points are configured.
func BenchmarkHitEnabledOther(b *testing.B) {
	if err := Enable("participant.after-effect=off"); err != nil {
		b.Fatal(err)
	}
	defer Disable()
	for i := 0; i < b.N; i++ {
		Hit("orchestrator.after-append")
	}
}
