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
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/participants/inventory"
	"github.com/jetflow-io/jetflow/schema"
	"github.com/jetflow-io/jetflow/streams"
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

// SimulateValues are the values each system of SimulateKeys understands
// (see the README and the participant packages). "fail_n:N" takes N from 1
// to MaxFailN; "pending_then_settle:<duration>" and "<duration>" take a Go
// duration from 0 to MaxSimulateDelay. An empty value is the system's
// normal behaviour.
var SimulateValues = map[string][]string{
	"payment":      {"decline", "fail", "timeout", "timeout_after_effect", "crash_after_effect", "pending_then_settle:<duration>", "fail_n:N", "fail_always"},
	"refund":       {"fail_n:N", "fail_always"},
	"inventory":    {"out_of_stock", "timeout", "timeout_after_effect", "fail_n:N", "fail_always"},
	"release":      {"fail_n:N", "fail_always"},
	"shipping":     {"fail", "timeout_after_effect", "fail_n:N", "fail_always"},
	"cancel":       {"fail_n:N", "fail_always"},
	"notification": {"fail_n:N", "fail_always"},
	"pickup":       {"never", "at_creation", "<duration>"},
}

// Bounds of an order's numbers.
const (
	// MaxAmountCents is the largest amount an order may carry: 10^12
	// cents, ten billion in the currency's main unit.
	MaxAmountCents = 1_000_000_000_000
	// MaxQty is the largest quantity of one item.
	MaxQty = 1_000_000
	// MaxFailN is the largest N of a "fail_n:N" simulate value.
	MaxFailN = 1000
	// MaxSimulateDelay is the longest delay a simulate value may ask for.
	MaxSimulateDelay = 30 * 24 * time.Hour
)

var (
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
	orderIDPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
)

// quote quotes a value for an error message, at most 200 bytes of it: the
// value may be hostile and as large as the message that carried it.
func quote(s string) string { return strconv.Quote(streams.Clip(s, 200)) }

// Validate reports every problem with o, each naming the value as sent
// (quoted values cut to 200 bytes).
func (o Order) Validate() error {
	var errs []string
	if o.OrderID == "" {
		errs = append(errs, "order_id is missing")
	} else if !orderIDPattern.MatchString(o.OrderID) {
		errs = append(errs, fmt.Sprintf("order_id %s: want 1-128 characters of [A-Za-z0-9_-]", quote(o.OrderID)))
	}
	if o.CustomerID == "" {
		errs = append(errs, "customer_id is missing")
	}
	if o.AmountCents < 0 {
		errs = append(errs, fmt.Sprintf("amount_cents is negative (%d)", o.AmountCents))
	} else if o.AmountCents > MaxAmountCents {
		errs = append(errs, fmt.Sprintf("amount_cents %d: out of range (0 to %d)", o.AmountCents, int64(MaxAmountCents)))
	}
	if !currencyPattern.MatchString(o.Currency) {
		errs = append(errs, fmt.Sprintf("currency %s: want an ISO 4217 code such as EUR", quote(o.Currency)))
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
		} else if it.Qty > MaxQty {
			errs = append(errs, fmt.Sprintf("items[%d].qty %d: out of range (1 to %d)", i, it.Qty, MaxQty))
		}
		if len(errs) > 20 {
			errs = append(errs, "...")
			break
		}
	}
	keys := make([]string, 0, len(o.Simulate))
	for k := range o.Simulate {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		allowed, known := SimulateValues[k]
		switch {
		case !known:
			errs = append(errs, fmt.Sprintf("simulate.%s: unknown system (known: %s)", streams.Clip(k, 200), strings.Join(SimulateKeys, ", ")))
		case !simulateAllowed(allowed, o.Simulate[k]):
			errs = append(errs, fmt.Sprintf("simulate.%s %s: want one of %s", k, quote(o.Simulate[k]), strings.Join(allowed, ", ")))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// simulateAllowed reports whether v matches one of the allowed values.
func simulateAllowed(allowed []string, v string) bool {
	if v == "" {
		return true
	}
	delay := func(s string) bool {
		d, err := time.ParseDuration(s)
		return err == nil && d >= 0 && d <= MaxSimulateDelay
	}
	for _, a := range allowed {
		switch a {
		case "fail_n:N":
			if n, ok := strings.CutPrefix(v, "fail_n:"); ok {
				if i, err := strconv.Atoi(n); err == nil && i >= 1 && i <= MaxFailN {
					return true
				}
			}
		case "pending_then_settle:<duration>":
			if d, ok := strings.CutPrefix(v, "pending_then_settle:"); ok && delay(d) {
				return true
			}
		case "<duration>":
			if delay(v) {
				return true
			}
		default:
			if v == a {
				return true
			}
		}
	}
	return false
}

// msgpackNumbers refuses the unsigned numbers of a msgpack order above
// their field's maximum, naming the value as sent: one that a Go int64 or
// int cannot hold (2^64-1) would otherwise decode wrapped, as -1.
func msgpackNumbers(data []byte) error {
	var raw struct {
		AmountCents any `msgpack:"amount_cents"`
		Items       []struct {
			Qty any `msgpack:"qty"`
		} `msgpack:"items"`
	}
	if err := schema.Msgpack.Unmarshal(data, &raw); err != nil {
		return nil // the typed decode already said what is wrong
	}
	check := func(name string, v any, limit uint64) error {
		if n, ok := v.(uint64); ok && n > limit {
			return fmt.Errorf("%s %d: out of range (at most %d)", name, n, limit)
		}
		return nil
	}
	errs := []error{check("amount_cents", raw.AmountCents, MaxAmountCents)}
	for i, it := range raw.Items {
		errs = append(errs, check(fmt.Sprintf("items[%d].qty", i), it.Qty, MaxQty))
	}
	return errors.Join(errs...)
}

// jsonError rewrites a JSON decoding error: a number that does not fit its
// field is named with its field and value, and the text is cut so that an
// error quoting a hostile field name stays small.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && strings.HasPrefix(te.Value, "number") {
		return fmt.Errorf("invalid JSON: %s %s: out of range or not a whole number", te.Field, streams.Clip(strings.TrimPrefix(te.Value, "number "), 200))
	}
	return errors.New("invalid JSON: " + streams.Clip(err.Error(), 300))
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
			return o, jsonError(err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return o, errors.New("invalid JSON: trailing data after the order object")
		}
	default:
		return o, fmt.Errorf("unsupported Content-Type %s (want %s or %s)", quote(ct), schema.ContentTypeJSON, schema.ContentTypeMsgpack)
	}
	if strings.HasPrefix(ct, schema.ContentTypeMsgpack) {
		if err := msgpackNumbers(data); err != nil {
			return o, err
		}
	}
	return o, o.Validate()
}
