package orchestrator

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/jetflow-io/jetflow/internal/fuzzcheck"
	"github.com/jetflow-io/jetflow/schema"
)

// FuzzDecodeSignalPayload converts anything published on signal.> as JSON
// or as msgpack: no panic, and a payload that converts holds no more than
// its bytes carry.
func FuzzDecodeSignalPayload(f *testing.F) {
	mp, _ := schema.Msgpack.Marshal(map[string]any{"carrier": "DHL", "n": 32, "tags": []string{"a"}})
	f.Add(true, mp)
	f.Add(false, []byte(`{"carrier":"DHL","n":32,"f":1.5e300,"big":123456789012345678901234567890}`))
	f.Add(false, []byte(" \t[1, 2, {\"a\": null}] \n"))
	for _, b := range [][]byte{
		[]byte("\x81\xa5items\xdd\xff\xff\xff\xff\x01"), // an array of 2^32-1 elements
		[]byte("\xdf\xff\xff\xff\xff"),                  // a map of 2^32-1 entries
		[]byte("\xc6\xff\xff\xff\xff\x00"),              // 4 GiB of binary
		[]byte("\x81\x91\xc0\xc0"),                      // an array as a map key
		[]byte("\x92\x30\xc0"),
		[]byte("\x81\xa1n\x20"), // ends in 0x20, a msgpack integer, not a space
	} {
		f.Add(true, b)
		f.Add(false, b)
	}
	f.Fuzz(func(t *testing.T, msgpack bool, data []byte) {
		h := nats.Header{}
		if msgpack {
			h.Set(schema.HeaderContentType, schema.ContentTypeMsgpack)
		}
		raw, err := signalPayload(data, h)
		if err != nil || len(raw) == 0 {
			return
		}
		js, err := schema.ToJSON(raw)
		if err != nil {
			t.Fatalf("msgpack=%v %x: the recorded payload does not render: %v", msgpack, data, err)
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			t.Fatalf("msgpack=%v %x: rendered as invalid JSON: %v", msgpack, data, err)
		}
		var tree any
		if err := schema.Msgpack.Unmarshal(raw, &tree); err != nil {
			t.Fatalf("msgpack=%v %x: the recorded payload does not decode: %v", msgpack, data, err)
		}
		if err := fuzzcheck.Check(data, tree); err != nil {
			t.Fatalf("msgpack=%v %x: %v", msgpack, data, err)
		}
	})
}

// TestSignalPayloadKeepsMsgpackWhitespaceBytes: a msgpack payload ending in
// 0x20 (the integer 32) is not trimmed as if it were JSON text.
func TestSignalPayloadKeepsMsgpackWhitespaceBytes(t *testing.T) {
	body, _ := schema.Msgpack.Marshal(map[string]int{"n": 32})
	raw, err := signalPayload(body, nats.Header{schema.HeaderContentType: []string{schema.ContentTypeMsgpack}})
	if err != nil || string(raw) != string(body) {
		t.Fatalf("payload %x, %v; want %x", raw, err, body)
	}
}

// TestSignalPayloadRefusesInfiniteNumbers: a JSON number no float64 holds
// is refused with its reason, not recorded as an infinity that nothing can
// render; the largest finite one is kept.
func TestSignalPayloadRefusesInfiniteNumbers(t *testing.T) {
	for _, body := range []string{`1e700`, `{"amount":[1, -1e400]}`} {
		if raw, err := signalPayload([]byte(body), nil); err == nil || !strings.Contains(err.Error(), "out of the range of a 64-bit float") {
			t.Fatalf("payload %s: %x, %v; want refused as out of range", body, raw, err)
		}
	}
	raw, err := signalPayload([]byte(`{"f":1.7976931348623157e308}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if js, err := schema.ToJSON(raw); err != nil || !strings.Contains(string(js), "1.7976931348623157e+308") {
		t.Fatalf("largest float: %s, %v", js, err)
	}
}
