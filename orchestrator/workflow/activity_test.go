package workflow

import (
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/schema"
)

// The retry count a step asks for is the one its command carries:
// Unlimited is the wire's 0, an unset count the default 10.
func TestStepOptionsOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		name            string
		opts            StepOptions
		attempts        int
		scheduleToClose time.Duration
	}{
		{"unset is the default", StepOptions{}, 10, 0},
		{"a count is kept", StepOptions{Retry: RetryPolicy{MaxAttempts: 3}}, 3, 0},
		{"unlimited is the wire's 0", StepOptions{Retry: RetryPolicy{MaxAttempts: Unlimited}, ScheduleToClose: time.Hour}, 0, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry()
			act := charge.WithOptions(tc.opts)
			Register(r, "f", func(ctx Context, _ int) (string, error) { return Execute[string](ctx, act, 1) })
			fn, _ := r.Lookup("f")
			o := Replay(fn, "w1", hist(t, 0), nil)
			if len(o.Decisions) != 1 {
				t.Fatalf("decisions %v", decisions(o))
			}
			c := o.Decisions[0].(*schema.Command)
			if c.Retry.MaxAttempts != tc.attempts || c.ScheduleToClose != tc.scheduleToClose {
				t.Fatalf("command max attempts %d, schedule-to-close %v; want %d, %v", c.Retry.MaxAttempts, c.ScheduleToClose, tc.attempts, tc.scheduleToClose)
			}
		})
	}
}
