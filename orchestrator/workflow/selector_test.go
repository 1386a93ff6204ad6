package workflow

import (
	"fmt"
	"testing"

	"github.com/jetflow-io/jetflow/schema"
)

// threeFutures adds three step futures to one Selector and selects three
// times, recording which handler ran.
func threeFutures(ctx Context, _ int) ([]int, error) {
	var got []int
	sel := NewSelector(ctx)
	for i, act := range []Activity{charge, reserve, ship} {
		n := i + 1
		sel.AddFuture(ExecuteAsync[int](ctx, act, n), func() { got = append(got, n) })
	}
	for i := 0; i < 3; i++ {
		sel.Select(ctx)
	}
	return got, nil
}

func TestSelectorMatchesEachFutureOnce(t *testing.T) {
	r := NewRegistry()
	Register(r, "three", threeFutures)
	fn, _ := r.Lookup("three")
	for _, tc := range []struct {
		name    string
		results []schema.Kinded
		want    string
	}{
		{"in issue order", []schema.Kinded{ok(1, 1), ok(2, 2), ok(3, 3)}, "[1 2 3]"},
		{"in history order", []schema.Kinded{ok(2, 2), ok(3, 3), ok(1, 1)}, "[2 3 1]"},
		// All three ready before the first Select: still once each.
		{"all ready at once", nil, "[1 2 3]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := []schema.Kinded{cmd(1, charge), cmd(2, reserve), cmd(3, ship)}
			res := tc.results
			if res == nil {
				h = []schema.Kinded{cmd(1, charge), ok(1, 1), cmd(2, reserve), ok(2, 2), cmd(3, ship), ok(3, 3)}
			}
			o := Replay(fn, "w1", hist(t, 0, append(h, res...)...), nil)
			if o.Finished == nil {
				t.Fatalf("not finished: %+v", o)
			}
			var got []int
			if err := schema.DecodeRaw(o.Finished.Output, &got); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != tc.want {
				t.Fatalf("handlers ran %v, want %s", got, tc.want)
			}
		})
	}
}

// A selector with every future matched blocks (the workflow waits) instead
// of running a handler again.
func TestSelectorWithEveryCaseMatchedWaits(t *testing.T) {
	r := NewRegistry()
	Register(r, "again", func(ctx Context, _ int) (int, error) {
		runs := 0
		sel := NewSelector(ctx).AddFuture(ExecuteAsync[int](ctx, charge, 1), func() { runs++ })
		sel.Select(ctx)
		sel.Select(ctx)
		return runs, nil
	})
	fn, _ := r.Lookup("again")
	o := Replay(fn, "w1", hist(t, 0, cmd(1, charge), ok(1, 1)), nil)
	if o.Finished != nil || o.Blocked != nil {
		t.Fatalf("second Select ran a matched case again: %+v", o.Finished)
	}
}
