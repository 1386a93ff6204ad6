package fulfillment

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/internal/fuzzcheck"
	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/schema"
)

// hostileOrders are msgpack order bodies no honest client sends.
var hostileOrders = [][]byte{
	// items declares 0xFFFFFFFF elements in 68 bytes: 96 GB before the fix.
	append(append([]byte("\x85\xa5items\xdd\xff\xff\xff\xff"), "\xa8order_id\xa7o-bomb1\xabcustomer_id\xa3c-1\xacamount_cents\x64"...), "\xa8currency"...),
	[]byte("\x81\xa5items\xdf\xff\xff\xff\xff"),               // items as a map of 2^32-1 entries
	[]byte("\x81\xa8order_id\xdb\xff\xff\xff\xffxx"),          // a 4 GiB string
	[]byte("\x81\xa8simulate\x81\x91\xc0\xc0"),                // an array as a map key
	[]byte("\x81\xa5items\x91\x82\xa3sku\xc0\xa3qty\xd3\x80"), // an int64 cut short
	[]byte("\x81\xa5items\x9f"),                               // a fixarray with nothing behind it
}

// FuzzDecodeOrder parses anything as an order.created, as msgpack or as
// JSON: no panic, and what decodes holds no more than its bytes carry.
func FuzzDecodeOrder(f *testing.F) {
	good := Order{OrderID: "o-1", CustomerID: "c-1", AmountCents: 100, Currency: "EUR",
		Items: []inventory.Item{{SKU: "sku-1", Qty: 2}}, Simulate: map[string]string{"payment": "decline"}}
	mp, err := schema.Msgpack.Marshal(good)
	if err != nil {
		f.Fatal(err)
	}
	js, _ := json.Marshal(good)
	f.Add(true, mp)
	f.Add(false, js)
	for _, b := range hostileOrders {
		f.Add(true, b)
		f.Add(false, b)
	}
	f.Add(false, []byte(`{"order_id":"o-1","items":[`+"[[[[[[[[[[[[[[[[[[[[[[[["+`]}`))
	f.Fuzz(func(t *testing.T, msgpack bool, data []byte) {
		h := nats.Header{}
		if msgpack {
			h.Set(schema.HeaderContentType, schema.ContentTypeMsgpack)
		}
		o, _ := ParseOrder(data, h)
		if err := fuzzcheck.Check(data, o); err != nil {
			t.Fatalf("msgpack=%v %x: %v", msgpack, data, err)
		}
	})
}
