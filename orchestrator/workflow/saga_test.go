package workflow

import (
	"testing"

	"github.com/jetflow-io/jetflow/schema"
)

// A compensation that returns a value (a refund ID) counts as succeeded:
// its result is not decoded into anything.
func TestCompensationReturningAValue(t *testing.T) {
	h := []schema.Kinded{
		cmd(1, charge), ok(1, "ch-1"), cmd(2, reserve), failed(2, "out_of_stock"),
		&schema.Command{ID: 3, Service: "payment", Action: "refund", Compensation: true}, ok(3, "refund-77"),
	}
	o := Replay(fnOf(t), "w1", hist(t, 5, h...), nil)
	if o.Finished == nil || o.Finished.Status != schema.StatusCompensated {
		t.Fatalf("outcome %+v, want compensated", o.Finished)
	}
}
