package streams

import (
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

func TestValidUserID(t *testing.T) {
	for _, tc := range []struct {
		id, err string
	}{
		{id: "o-1001"},
		{id: "o-1001-late-7"},
		{id: "_late-x", err: `ids starting with "_" are reserved`},
		{id: "a.b", err: "want 1-128 characters"},
	} {
		err := ValidUserID(tc.id)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ValidUserID(%q) = %v, want %q", tc.id, err, tc.err)
		}
	}
}

func TestDerivedIDStaysValidAndDistinct(t *testing.T) {
	if id := DerivedID("late", "o-1", "abc"); id != "_late-o-1-abc" {
		t.Fatalf("short id %q", id)
	}
	long := strings.Repeat("a", 128)
	a, b := DerivedID("late", long, "k1"), DerivedID("late", long, "k2")
	for _, id := range []string{a, b} {
		if err := ValidID(id); err != nil || !strings.HasPrefix(id, ReservedIDPrefix+"late-aaa") {
			t.Fatalf("derived id %q: %v", id, err)
		}
	}
	if a == b {
		t.Fatalf("two derivations of a long id meet: %q", a)
	}
}

func TestOnItsSubject(t *testing.T) {
	due := time.Unix(1, 0)
	for _, tc := range []struct {
		name    string
		subject string
		value   schema.Kinded
		want    bool
	}{
		{"fire on its timer's subject", FiredSubject("w", 4), &schema.TimerFired{TimerID: 4, Due: due}, true},
		{"fire of timer 4 on timer 9's subject", FiredSubject("w", 9), &schema.TimerFired{TimerID: 4, Due: due}, false},
		{"result on its command's subject", ResultSubject("w", 2, "payment", "charge"), &schema.Result{CommandID: 2, Service: "payment", Action: "charge"}, true},
		{"result of command 2 on command 3's subject", ResultSubject("w", 3, "payment", "charge"), &schema.Result{CommandID: 2, Service: "payment", Action: "charge"}, false},
		{"signal on a signal subject", SignalEventSubject("w", 12), &schema.Signal{Name: "x"}, true},
		{"signal on a fired subject", FiredSubject("w", 4), &schema.Signal{Name: "x"}, false},
		{"start", StartSubject("w"), &schema.WorkflowStarted{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := OnItsSubject(Event{Subject: tc.subject, Value: tc.value}); got != tc.want {
				t.Fatalf("OnItsSubject = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		filter, subject string
		want            bool
	}{
		{"wf.*.start", "wf.o-1.start", true},
		{"wf.*.start", "wf.o-1.done.completed", false},
		{"ix.done.manual.*", "ix.done.manual.o-1", true},
		{"ix.done.manual.*", "ix.done.completed.o-1", false},
		{"ix.blocked.*.*", "ix.blocked.o-1.12", true},
		{"ix.>", "ix.blocked.o-1.12", true},
		{"ix.>", "ix", false},
		{"wf.*.start", "wf.o-1", false},
	} {
		if got := subjectMatches(c.filter, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v", c.filter, c.subject, got)
		}
	}
}

func TestSourceSubject(t *testing.T) {
	h := "JETFLOW_HISTORY 2 wf.*.done.*\fwf.*.blocked.* ix.done.{{wildcard(2)}}\fix.blocked wf.x-1.done.manual xRgZOcvN"
	if got := SourceSubject(h); got != "wf.x-1.done.manual" {
		t.Fatalf("SourceSubject = %q", got)
	}
	if got := SourceSubject("garbage"); got != "" {
		t.Fatalf("SourceSubject of garbage = %q", got)
	}
}
