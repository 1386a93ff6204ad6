package workflow

import (
	"fmt"
	"testing"

	"github.com/jetflow-io/jetflow/schema"
)

// twoChecks checks the same change ID before each of two steps.
func twoChecks(ctx Context, _ int) ([]int, error) {
	var vs []int
	for i := 0; i < 2; i++ {
		v := GetVersion(ctx, "fraud", DefaultVersion, 1)
		vs = append(vs, v)
		act := charge
		if v == 1 {
			act = reserve
		}
		if _, err := Execute[string](ctx, act, i); err != nil {
			return nil, err
		}
	}
	return vs, nil
}

func TestGetVersionIsOneVersionPerRun(t *testing.T) {
	r := NewRegistry()
	Register(r, "two", twoChecks)
	fn, _ := r.Lookup("two")
	out := func(o Outcome) string {
		t.Helper()
		if o.Finished == nil {
			t.Fatalf("not finished: decisions %v blocked %+v", decisions(o), o.Blocked)
		}
		var vs []int
		_ = schema.DecodeRaw(o.Finished.Output, &vs)
		return fmt.Sprint(vs)
	}

	t.Run("a run started before the change stays on the old path", func(t *testing.T) {
		o := Replay(fn, "w1", hist(t, 0, cmd(1, charge), ok(1, "c")), nil)
		if got := decisions(o); len(got) != 1 || got[0] != "command payment.charge" {
			t.Fatalf("second step %v, want the old path's charge and no marker", got)
		}
		o = Replay(fn, "w1", hist(t, 0, cmd(1, charge), ok(1, "c"), cmd(2, charge), ok(2, "c")), nil)
		if got := out(o); got != "[-1 -1]" {
			t.Fatalf("versions %s", got)
		}
	})
	t.Run("a new run records the version once", func(t *testing.T) {
		o := Replay(fn, "w1", hist(t, 0), nil)
		if got := decisions(o); len(got) != 2 || got[0] != `marker "version:fraud"` || got[1] != "command inventory.reserve" {
			t.Fatalf("first decisions %v", got)
		}
		h := append([]schema.Kinded{}, o.Decisions...)
		h = append(h, ok(2, "r"))
		o = Replay(fn, "w1", hist(t, 0, h...), nil)
		if got := decisions(o); len(got) != 1 || got[0] != "command inventory.reserve" {
			t.Fatalf("second step %v, want reserve without a second marker", got)
		}
		h = append(h, o.Decisions[0], ok(3, "r"))
		if got := out(Replay(fn, "w1", hist(t, 0, h...), nil)); got != "[1 1]" {
			t.Fatalf("versions %s", got)
		}
	})
}
