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
