package workflow

import (
	"errors"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/schema"
)

func TestReplayerFindsTheFirstDivergence(t *testing.T) {
	reg := NewRegistry()
	Register(reg, "t", sagaFlow) // hist() names type "t"
	rp := NewReplayer(reg)
	done := &schema.WorkflowFinished{Status: schema.StatusCompleted}
	for _, tc := range []struct {
		name string
		h    []schema.Kinded
		want string // "" for no divergence
	}{
		{"a finished history that matches", []schema.Kinded{cmd(1, charge), ok(1, "c"), cmd(2, reserve), ok(2, "r"), cmd(3, ship), ok(3, "s"), done}, ""},
		{"an order in flight", []schema.Kinded{cmd(1, charge), ok(1, "c")}, ""},
		{"another step recorded", []schema.Kinded{cmd(1, reserve), ok(1, "c")}, "history has command inventory.reserve, code issued command payment.charge"},
		{"the code goes on past the recorded end", []schema.Kinded{cmd(1, charge), ok(1, "c"), done}, "history has workflow.finished completed, code issued command inventory.reserve"},
		{"the code ends otherwise", []schema.Kinded{cmd(1, charge), failed(1, "declined"), done}, "history has workflow.finished completed, code issued workflow.finished failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := rp.ReplayHistory("w1", hist(t, 5, tc.h...))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var div *DivergenceError
			if !errors.As(err, &div) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a divergence: %s", err, tc.want)
			}
		})
	}
	if err := NewReplayer(NewRegistry()).ReplayHistory("w1", hist(t, 5)); err == nil || !strings.Contains(err.Error(), `type "t" is not registered`) {
		t.Fatalf("unregistered type: %v", err)
	}
}
