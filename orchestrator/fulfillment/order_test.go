package fulfillment

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/jetflow-io/jetflow/schema"
)

func TestParseOrder(t *testing.T) {
	good := `{"order_id":"o-1001","customer_id":"c-7","amount_cents":12999,"currency":"EUR","items":[{"sku":"sku-1","qty":2}]}`
	o, err := ParseOrder([]byte(good), nil)
	if err != nil || o.OrderID != "o-1001" || o.AmountCents != 12999 || o.Items[0].Qty != 2 {
		t.Fatalf("good order: %+v %v", o, err)
	}
	mp, _ := msgpack.Marshal(o)
	if back, err := ParseOrder(mp, nats.Header{schema.HeaderContentType: []string{schema.ContentTypeMsgpack}}); err != nil || back.OrderID != o.OrderID {
		t.Fatalf("msgpack order: %+v %v", back, err)
	}
	for _, tc := range []struct{ name, body, ct, want string }{
		{"invalid JSON", `{"order_id":`, "", "invalid JSON"},
		{"trailing data", good + `{}`, "", "trailing data"},
		{"missing order id", strings.Replace(good, `"order_id":"o-1001",`, "", 1), "", "order_id is missing"},
		{"order id with a dot", strings.Replace(good, "o-1001", "o.1001", 1), "", "want 1-128 characters"},
		{"negative amount", strings.Replace(good, "12999", "-1", 1), "", "amount_cents is negative"},
		{"unknown field", strings.Replace(good, `"currency"`, `"coupon":"x","currency"`, 1), "", "unknown field"},
		{"bad currency", strings.Replace(good, "EUR", "euro", 1), "", "currency"},
		{"no items", strings.Replace(good, `[{"sku":"sku-1","qty":2}]`, `[]`, 1), "", "items is empty"},
		{"zero quantity", strings.Replace(good, `"qty":2`, `"qty":0`, 1), "", "qty must be positive"},
		{"unknown simulate key", strings.Replace(good, `"items"`, `"simulate":{"teleport":"x"},"items"`, 1), "", "simulate.teleport"},
		{"garbage msgpack", "\xc1\xc1", schema.ContentTypeMsgpack, "invalid msgpack"},
		{"unsupported content type", good, "text/xml", "unsupported Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := nats.Header{}
			if tc.ct != "" {
				h.Set(schema.HeaderContentType, tc.ct)
			}
			_, err := ParseOrder([]byte(tc.body), h)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestOrderValuesRefused: every simulate value the reference systems do not
// understand, and every number out of range, is refused with the value as
// sent in the error.
func TestOrderValuesRefused(t *testing.T) {
	good := `{"order_id":"o-1","customer_id":"c-7","amount_cents":12999,"currency":"EUR","items":[{"sku":"sku-1","qty":2}]}`
	withSimulate := func(sim string) string {
		return strings.Replace(good, `"items"`, `"simulate":`+sim+`,"items"`, 1)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"declined is not decline", withSimulate(`{"payment":"declined"}`), `simulate.payment "declined": want one of decline, fail, timeout`},
		{"pickup soon-ish", withSimulate(`{"pickup":"soon-ish"}`), `simulate.pickup "soon-ish": want one of never, at_creation, <duration>`},
		{"negative pickup delay", withSimulate(`{"pickup":"-5s"}`), `simulate.pickup "-5s"`},
		{"fail_n without a number", withSimulate(`{"refund":"fail_n:x"}`), `simulate.refund "fail_n:x": want one of fail_n:N, fail_always`},
		{"fail_n negative", withSimulate(`{"release":"fail_n:-3"}`), `simulate.release "fail_n:-3"`},
		{"settle without a duration", withSimulate(`{"payment":"pending_then_settle:later"}`), `simulate.payment "pending_then_settle:later"`},
		{"decline is a payment value only", withSimulate(`{"shipping":"decline"}`), `simulate.shipping "decline"`},
		{"amount beyond int64", strings.Replace(good, "12999", "18446744073709551615", 1), "amount_cents 18446744073709551615: out of range"},
		{"amount above the maximum", strings.Replace(good, "12999", "1000000000001", 1), "amount_cents 1000000000001: out of range"},
		{"fractional amount", strings.Replace(good, "12999", "12.5", 1), "amount_cents 12.5"},
		{"qty above the maximum", strings.Replace(good, `"qty":2`, `"qty":1000001`, 1), "items[0].qty 1000001: out of range"},
		{"qty beyond int", strings.Replace(good, `"qty":2`, `"qty":18446744073709551615`, 1), "qty 18446744073709551615: out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseOrder([]byte(tc.body), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	mp := nats.Header{schema.HeaderContentType: []string{schema.ContentTypeMsgpack}}
	order := func(amount, qty any) []byte {
		b, err := msgpack.Marshal(map[string]any{"order_id": "o-1", "customer_id": "c", "amount_cents": amount,
			"currency": "EUR", "items": []map[string]any{{"sku": "s", "qty": qty}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name        string
		amount, qty any
		want        string
	}{
		{"msgpack amount 2^64-1", uint64(1<<64 - 1), 1, "amount_cents 18446744073709551615: out of range"},
		{"msgpack amount 2^63", uint64(1 << 63), 1, "amount_cents 9223372036854775808: out of range"},
		{"msgpack amount above the maximum", int64(MaxAmountCents + 1), 1, "amount_cents 1000000000001: out of range"},
		{"msgpack qty 2^64-1", 5, uint64(1<<64 - 1), "items[0].qty 18446744073709551615: out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseOrder(order(tc.amount, tc.qty), mp)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Every value the README documents is accepted.
	for k, vs := range map[string][]string{
		"payment":  {"decline", "fail", "timeout", "crash_after_effect", "pending_then_settle:50ms", "fail_n:3", "fail_always", ""},
		"pickup":   {"never", "at_creation", "30s", ""},
		"refund":   {"fail_n:2", "fail_always"},
		"shipping": {"fail"}, "inventory": {"out_of_stock", "timeout"},
	} {
		for _, v := range vs {
			if _, err := ParseOrder([]byte(withSimulate(`{"`+k+`":"`+v+`"}`)), nil); err != nil {
				t.Errorf("simulate.%s %q refused: %v", k, v, err)
			}
		}
	}
}

// TestErrorsQuoteBoundedValues: an error never quotes more than 200 bytes of
// a bad value, however large the value is.
func TestErrorsQuoteBoundedValues(t *testing.T) {
	huge := strings.Repeat("x", 100<<10) + "."
	body := `{"order_id":"` + huge + `","customer_id":"c","amount_cents":1,"currency":"` + huge + `","items":[{"sku":"a","qty":1}],"simulate":{"` + huge + `":"x","payment":"` + huge + `"}}`
	_, err := ParseOrder([]byte(body), nil)
	if err == nil || len(err.Error()) > 4096 || !strings.Contains(err.Error(), "order_id") || !strings.Contains(err.Error(), "102401 bytes") {
		t.Fatalf("error of %d bytes: %.600s", len(err.Error()), err)
	}
	_, err = ParseOrder([]byte(`{"`+huge+`":1}`), nil)
	if err == nil || len(err.Error()) > 1024 || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("unknown field error of %d bytes: %.600s", len(err.Error()), err)
	}
}

func TestMixedOrderMix(t *testing.T) {
	counts := map[schema.Status]int{}
	for i := 0; i < 100; i++ {
		o, want := MixedOrder("m-", i)
		if err := o.Validate(); err != nil {
			t.Fatalf("order %d invalid: %v", i, err)
		}
		counts[want]++
	}
	if counts[schema.StatusCompleted] != 68 || counts[schema.StatusCompensated] != 30 || counts[schema.StatusManual] != 2 {
		t.Fatalf("mix %v", counts)
	}
}

// TestDemoMixShowsEveryOutcome: the 50 orders of `make run` (jetflow dev
// --demo 50) hold every outcome the README shows, a manual one included.
func TestDemoMixShowsEveryOutcome(t *testing.T) {
	counts := map[schema.Status]int{}
	for i := 0; i < 50; i++ {
		_, want := MixedOrder("m-", i)
		counts[want]++
	}
	if counts[schema.StatusCompleted] == 0 || counts[schema.StatusCompensated] == 0 || counts[schema.StatusManual] != 1 {
		t.Fatalf("the first 50 orders end %v, want completed, compensated and one manual", counts)
	}
}
