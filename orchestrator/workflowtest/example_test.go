package workflowtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/orchestrator"
	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
)

var sendReminder = workflow.Activity{Service: "email", Action: "remind"}

// Remind waits for a "paid" signal for up to 3 days, and reminds the
// customer once a day meanwhile.
func Remind(ctx workflow.Context, customer string) (string, error) {
	for day := 1; day <= 3; day++ {
		timer := workflow.NewTimer(ctx, 24*time.Hour)
		paid := false
		workflow.NewSelector(ctx).
			AddSignal(ctx, "paid", func(workflow.Payload) { paid = true; timer.Cancel(ctx) }).
			AddFuture(timer, func() {}).
			Select(ctx)
		if paid {
			return fmt.Sprintf("%s paid on day %d", customer, day), nil
		}
		if _, err := workflow.Execute[string](ctx, sendReminder, customer); err != nil {
			return "", err
		}
	}
	return customer + " never paid", nil
}

func TestRemindDays(t *testing.T) {
	env := workflowtest.New(t)
	workflow.Register(env.Registry(), "remind", Remind)
	reminders := make(chan string, 10)
	env.Stub(sendReminder, func(ctx context.Context, cmd *participants.Command) (any, error) {
		var who string
		_ = cmd.Decode(&who)
		reminders <- who
		return "sent", nil
	})
	env.Run()
	env.Start("remind", "inv-1", "ada")
	env.WaitFor("inv-1", func(d *orchestrator.Description) bool { return len(d.Timers) == 1 })
	env.Advance(24 * time.Hour) // day 1 passes: one reminder
	env.WaitFor("inv-1", func(d *orchestrator.Description) bool { return len(d.Timers) == 1 && d.Timers[0].ID > 1 })
	env.Signal("inv-1", "paid", nil)
	env.Wait("inv-1")
	var out string
	if err := env.Output("inv-1", &out); err != nil {
		t.Fatal(err)
	}
	if out != "ada paid on day 2" || len(reminders) != 1 {
		t.Fatalf("output %q after %d reminders", out, len(reminders))
	}
}
