package fulfillment

import (
	"fmt"

	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/schema"
)

// MixedOrder returns the i-th order of a deterministic mix of outcomes, and
// the status it must end in. Out of every 100 orders:
//
//	10 declined by payment                    → compensated (nothing to undo)
//	10 out of stock                           → compensated (refund)
//	 5 rejected by shipping                   → compensated (release, refund)
//	 5 out of stock, refund fails twice       → compensated (refund on attempt 3)
//	 2 rejected by shipping, refund always fails → manual
//	68 fulfilled                              → completed
//
// The kinds are spread by a fixed permutation of i, so any run of 100
// consecutive orders holds the exact mix and shorter runs a fair sample;
// order 0 is a manual one, so the 50 orders of `make run` show every
// outcome.
// `jetflow dev --demo N` and the end-to-end tests use it.
func MixedOrder(prefix string, i int) (Order, schema.Status) {
	o := Order{
		OrderID:     fmt.Sprintf("%s%05d", prefix, i),
		CustomerID:  fmt.Sprintf("c-%d", i%97),
		AmountCents: int64(1000 + (i*137)%9000),
		Currency:    "EUR",
		Items:       []inventory.Item{{SKU: fmt.Sprintf("sku-%d", i%13), Qty: 1 + i%3}},
	}
	want := schema.StatusCompleted
	switch k := (i * 37) % 100; {
	case k < 2: // i = 0 and 73: the first 50 orders hold one
		o.Simulate = map[string]string{"shipping": "fail", "refund": "fail_always"}
		want = schema.StatusManual
	case k < 12:
		o.Simulate = map[string]string{"payment": "decline"}
		want = schema.StatusCompensated
	case k < 22:
		o.Simulate = map[string]string{"inventory": "out_of_stock"}
		want = schema.StatusCompensated
	case k < 27:
		o.Simulate = map[string]string{"shipping": "fail"}
		want = schema.StatusCompensated
	case k < 32:
		o.Simulate = map[string]string{"inventory": "out_of_stock", "refund": "fail_n:2"}
		want = schema.StatusCompensated
	}
	return o, want
}
