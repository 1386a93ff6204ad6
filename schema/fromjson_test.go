package schema

import (
	"reflect"
	"testing"
)

// Every golden value survives ToJSON then FromJSON: what `jetflow show
// --output json` prints is enough to replay a history.
func TestFromJSONInvertsToJSON(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			body, kind, err := Encode(g.v)
			if err != nil {
				t.Fatal(err)
			}
			js, err := ToJSON(body)
			if err != nil {
				t.Fatal(err)
			}
			back, err := FromJSON(kind, js)
			if err != nil {
				t.Fatalf("%s: %v", js, err)
			}
			// Compare decoded values: nested payloads are re-encoded, so
			// compare them decoded too.
			var want, got any
			_ = DecodeRaw(mustRaw(g.v), &want)
			_ = DecodeRaw(mustRaw(back), &got)
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("round trip of %s:\n got  %#v\n want %#v", js, got, want)
			}
		})
	}
	if _, err := FromJSON(KindTimerFired, []byte(`{"timer_id":1,"due":"tomorrow"}`)); err == nil {
		t.Fatal("a bad time was taken")
	}
}
