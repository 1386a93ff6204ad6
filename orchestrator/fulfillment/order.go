// Package fulfillment is the reference order-fulfillment workflow: charge,
// reserve inventory, create a shipment, notify; on failure, compensate the
// completed steps in reverse. It is written with the public workflow SDK
// only, as any user's workflow would be; the engine does not import it.
package fulfillment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/schema"
)

// Order is the body of an order.created message.
type Order struct {
	OrderID     string           `json:"order_id" msgpack:"order_id"`
	CustomerID  string           `json:"customer_id" msgpack:"customer_id"`
	AmountCents int64            `json:"amount_cents" msgpack:"amount_cents"`
	Currency    string           `json:"currency" msgpack:"currency"`
	Items       []inventory.Item `json:"items" msgpack:"items"`
	// Simulate asks the simulated systems for faults, per system:
	// {"payment": "decline", "refund": "fail_n:3", ...}. See README.
	Simulate map[string]string `json:"simulate,omitempty" msgpack:"simulate,omitempty"`
}

// SimulateKeys are the systems an order's "simulate" may name.
var SimulateKeys = []string{"payment", "refund", "inventory", "release", "shipping", "cancel", "notification", "pickup"}

var (
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
	orderIDPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
)

// Validate reports the first problem with o.
func (o Order) Validate() error {
	var errs []string
	if o.OrderID == "" {
		errs = append(errs, "order_id is missing")
	} else if !orderIDPattern.MatchString(o.OrderID) {
		errs = append(errs, fmt.Sprintf("order_id %q: want 1-128 characters of [A-Za-z0-9_-]", o.OrderID))
	}
	if o.CustomerID == "" {
		errs = append(errs, "customer_id is missing")
	}
	if o.AmountCents < 0 {
		errs = append(errs, fmt.Sprintf("amount_cents is negative (%d)", o.AmountCents))
	}
	if !currencyPattern.MatchString(o.Currency) {
		errs = append(errs, fmt.Sprintf("currency %q: want an ISO 4217 code such as EUR", o.Currency))
	}
	if len(o.Items) == 0 {
		errs = append(errs, "items is empty")
	}
	for i, it := range o.Items {
		if it.SKU == "" {
			errs = append(errs, fmt.Sprintf("items[%d].sku is missing", i))
		}
		if it.Qty <= 0 {
			errs = append(errs, fmt.Sprintf("items[%d].qty must be positive (%d)", i, it.Qty))
		}
	}
	keys := make([]string, 0, len(o.Simulate))
	for k := range o.Simulate {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		known := false
		for _, s := range SimulateKeys {
			known = known || s == k
		}
		if !known {
			errs = append(errs, fmt.Sprintf("simulate.%s: unknown system (known: %s)", k, strings.Join(SimulateKeys, ", ")))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// ParseOrder decodes an order.created body: msgpack when the Content-Type
// header says application/msgpack, JSON otherwise (as `nats pub` sends it).
// Unknown fields are refused, so a typo does not silently drop data.
func ParseOrder(data []byte, h nats.Header) (Order, error) {
	var o Order
	ct := ""
	if h != nil {
		ct = h.Get(schema.HeaderContentType)
	}
	switch {
	case strings.HasPrefix(ct, schema.ContentTypeMsgpack):
		// UnmarshalStrict checks the declared lengths against the body
		// before the decoder allocates for them, and refuses unknown
		// fields. (JSON needs no such check: encoding/json allocates in
		// proportion to the body, which the stream's message size limit
		// bounds.)
		if err := schema.UnmarshalStrict(data, &o); err != nil {
			return o, fmt.Errorf("invalid msgpack: %w", err)
		}
	case ct == "" || strings.HasPrefix(ct, schema.ContentTypeJSON):
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return o, fmt.Errorf("invalid JSON: %w", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return o, errors.New("invalid JSON: trailing data after the order object")
		}
	default:
		return o, fmt.Errorf("unsupported Content-Type %q (want %s or %s)", ct, schema.ContentTypeJSON, schema.ContentTypeMsgpack)
	}
	return o, o.Validate()
}
