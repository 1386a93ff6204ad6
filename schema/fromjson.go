package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// FromJSON is the inverse of ToJSON for a persisted type: it reads the JSON
// rendering of a message body of the given kind (as `jetflow show --output
// json` prints it in "data") back into its value. Nested encoded values
// (inputs, outputs, payloads) are re-encoded with msgpack; integral numbers
// become integers. The time fields of the kind's own struct are parsed
// from their RFC 3339 rendering; a time inside a payload stays a string,
// and a non-UTF-8 byte string stays the base64 text ToJSON wrote.
func FromJSON(kind Kind, data []byte) (Kinded, error) {
	v, err := New(kind)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("jetflow: %s from JSON: %w", kind, err)
	}
	m, ok := tree.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("jetflow: %s from JSON: want an object, got %T", kind, tree)
	}
	for name := range timeFields(v) {
		s, ok := m[name].(string)
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("jetflow: %s from JSON: %s %q: %w", kind, name, s, err)
		}
		m[name] = t
	}
	body, err := Msgpack.Marshal(fromJSONNumbers(m))
	if err != nil {
		return nil, fmt.Errorf("jetflow: %s from JSON: %w", kind, err)
	}
	if err := Msgpack.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("jetflow: %s from JSON: %w", kind, err)
	}
	return v, nil
}

var timeType = reflect.TypeOf(time.Time{})

// timeFields lists the msgpack names of the time.Time fields of v's struct.
func timeFields(v Kinded) map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeOf(v).Elem()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type != timeType {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
		if name == "" {
			name = f.Name
		}
		out[name] = true
	}
	return out
}

// fromJSONNumbers replaces the json.Numbers of a decoded tree with int64
// when integral, float64 otherwise.
func fromJSONNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = fromJSONNumbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = fromJSONNumbers(e)
		}
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return n
		}
		if f, err := t.Float64(); err == nil {
			return f
		}
		return t.String()
	}
	return v
}
