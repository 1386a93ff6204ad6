package streams

import "testing"

func TestRunIDs(t *testing.T) {
	for _, c := range []struct {
		hid   string
		id    string
		run   int
		valid bool
	}{
		{"o-1", "o-1", 1, true},
		{"o-1=2", "o-1", 2, true},
		{"o-1=40", "o-1", 40, true},
		{"o-1=1", "o-1=1", 0, false},       // run 1 is the workflow ID itself
		{"o-1=0", "o-1=0", 0, false},       // no run 0
		{"o-1=02", "o-1", 2, false},        // one spelling per run
		{"o-1=x", "o-1=x", 0, false},       // not a number
		{"o-1=runs", "o-1=runs", 0, false}, // the run pointers' tree, no history
		{"o 1=2", "o 1", 2, false},
	} {
		id, run := ParseRunID(c.hid)
		if id != c.id || run != c.run {
			t.Errorf("ParseRunID(%q) = %q, %d; want %q, %d", c.hid, id, run, c.id, c.run)
		}
		if err := ValidHistoryID(c.hid); (err == nil) != c.valid {
			t.Errorf("ValidHistoryID(%q) = %v; want valid %v", c.hid, err, c.valid)
		}
		if c.valid && RunID(c.id, c.run) != c.hid {
			t.Errorf("RunID(%q, %d) = %q; want %q", c.id, c.run, RunID(c.id, c.run), c.hid)
		}
	}
	if ValidID("o-1=2") == nil {
		t.Error("a run's history ID must not be a valid workflow ID")
	}
}
