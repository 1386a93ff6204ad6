package schema

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jetflow-io/jetflow/internal/fuzzcheck"
)

// hostile is msgpack no honest writer produces, each with the words its
// refusal must contain.
var hostile = []struct {
	name, hex, want string
}{
	{"array of 2^32-1 elements", "ddffffffff01", "array declares 4294967295 elements, 1 bytes remain"},
	{"map of 2^32-1 entries", "dfffffffff0102", "map declares 4294967295 entries, 2 bytes remain"},
	{"array16 longer than the body", "dc0100" + "01", "array declares 256 elements, 1 bytes remain"},
	{"fixarray longer than the body", "9f0102", "array declares 15 elements, 2 bytes remain"},
	{"map with too few bytes for its values", "82a161", "map declares 2 entries, 2 bytes remain"},
	{"str32 of 4 GiB", "dbffffffff6162", "str declares 4294967295 bytes, 2 bytes remain"},
	{"bin32 of 4 GiB", "c6ffffffff00", "bin declares 4294967295 bytes, 1 bytes remain"},
	{"ext32 of 4 GiB", "c9ffffffff0100", "ext declares 4294967295 bytes, 2 bytes remain"},
	{"fixstr cut short", "a5616263", "str at byte 0 needs 5 bytes, 3 bytes remain"},
	{"float64 cut short", "cb0000", "needs 8 bytes, 2 bytes remain"},
	{"length cut short", "dd00ff", "unexpected end of data"},
	{"empty", "", "unexpected end of data at byte 0"},
	{"never-used code", "c1", "invalid code 0xc1 at byte 0"},
	{"nesting of 65 arrays", strings.Repeat("91", 65) + "c0", "nests deeper than 64 levels"},
	{"array as a map key", "8191c0c0", "map key at byte 1 is not a scalar (array)"},
	{"map as a map key", "8180c0", "map key at byte 1 is not a scalar (map)"},
	{"the order bomb", hex.EncodeToString(fuzzcheck.OrderBomb()), "array declares 4294967295 elements, 56 bytes remain"},
}

func TestCheckMsgpackRefusesDeclaredLengthsTheBytesCannotHold(t *testing.T) {
	if n := len(fuzzcheck.OrderBomb()); n != 68 {
		t.Fatalf("the order bomb is %d bytes, want 68", n)
	}
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			b, err := hex.DecodeString(h.hex)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckMsgpack(b)
			if err == nil || !strings.Contains(err.Error(), h.want) {
				t.Fatalf("CheckMsgpack(%s) = %v, want an error saying %q", h.hex, err, h.want)
			}
			if err := Msgpack.Unmarshal(b, new(any)); err == nil || !strings.Contains(err.Error(), h.want) {
				t.Errorf("Msgpack.Unmarshal = %v, want %q", err, h.want)
			}
			if _, err := ToJSON(b); err == nil || !strings.Contains(err.Error(), h.want) {
				t.Errorf("ToJSON = %v, want %q", err, h.want)
			}
		})
	}
}

func TestCheckMsgpackAcceptsEveryHonestValue(t *testing.T) {
	for _, g := range goldens {
		body, _, _ := Encode(g.v)
		if err := CheckMsgpack(body); err != nil {
			t.Errorf("%s: %v", g.name, err)
		}
	}
	deep := any("leaf")
	for range MaxDepth - 1 {
		deep = []any{deep}
	}
	for name, v := range map[string]any{
		"empty containers": map[string]any{"a": []any{}, "m": map[string]any{}, "s": "", "b": []byte{}},
		"64 levels":        []any{deep},
		"big array":        make([]int, 70000),
		"long string":      strings.Repeat("x", 70000),
		"numbers":          []any{int8(-5), int64(-1 << 40), uint64(1 << 63), float32(1.5), 2.5, true, false, nil},
		"time":             time.Date(2026, 12, 1, 0, 0, 0, 1, time.UTC),
	} {
		body, err := Msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckMsgpack(body); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := ToJSON(body); err != nil {
			t.Errorf("%s: ToJSON: %v", name, err)
		}
	}
}

// bombChild is set in the child process of TestDecodeBombIsRefused.
const bombChild = "JETFLOW_TEST_DECODE_BOMB"

// TestDecodeBombIsRefused decodes the order bomb in a child process, the
// way a participant or the intake would decode it: without the bounds the
// child dies with "fatal error: runtime: out of memory" (a fatal error
// cannot be recovered, so it must not happen in this process).
func TestDecodeBombIsRefused(t *testing.T) {
	if os.Getenv(bombChild) != "" {
		var order struct {
			Items []struct {
				SKU string `msgpack:"sku"`
				Qty int    `msgpack:"qty"`
			} `msgpack:"items"`
		}
		os.Stdout.WriteString("unmarshal: " + errString(Msgpack.Unmarshal(fuzzcheck.OrderBomb(), &order)) + "\n")
		_, err := ToJSON(fuzzcheck.OrderBomb())
		os.Stdout.WriteString("tojson: " + errString(err) + "\n")
		raw, _ := EncodeRaw(map[string]any{"x": 1})
		res := &Result{Output: append(Raw{0xdd, 0xff, 0xff, 0xff, 0xff}, raw...)}
		body, _, _ := Encode(res)
		_, err = Decode(string(KindResult), SchemaString, body)
		os.Stdout.WriteString("decode: " + errString(err) + "\n")
		os.Exit(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDecodeBombIsRefused$", "-test.count=1")
	cmd.Env = append(os.Environ(), bombChild+"=1", "GOMEMLIMIT=256MiB")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("decoding the 68-byte order bomb killed the process (%v):\n%s", err, firstLines(out.String(), 5))
	}
	for _, want := range []string{
		"unmarshal: msgpack: array declares 4294967295 elements, 56 bytes remain",
		"tojson: msgpack: array declares 4294967295 elements, 56 bytes remain",
		"decode: jetflow: decode result: msgpack: array declares 4294967295 elements",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("child output lacks %q:\n%s", want, out.String())
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// kinds are the kinds FuzzDecode picks from.
var kinds = []Kind{KindWorkflowStarted, KindCommand, KindMarker, KindResult, KindWorkflowFinished,
	KindWorkflowBlocked, KindTimerStarted, KindTimerCancelled, KindTimerFired, KindSignal}

// seedHostile adds every hostile shape, and each wrapped in a Raw field, to
// a corpus through add.
func seedHostile(t interface{ Fatal(...any) }, add func([]byte)) {
	for _, h := range hostile {
		b, err := hex.DecodeString(h.hex)
		if err != nil {
			t.Fatal(err)
		}
		add(b)
		body, _, _ := Encode(&Result{WorkflowID: "o-1", CommandID: 1, Output: Raw(b)})
		add(body)
	}
}

// FuzzDecode decodes anything as every kind: no panic, and what decodes
// holds no more than its bytes could carry.
func FuzzDecode(f *testing.F) {
	for i, g := range goldens {
		body, _, _ := Encode(g.v)
		f.Add(uint8(i), body)
	}
	seedHostile(f, func(b []byte) {
		for i := range kinds {
			f.Add(uint8(i), b)
		}
	})
	f.Fuzz(func(t *testing.T, k uint8, body []byte) {
		kind := kinds[int(k)%len(kinds)]
		v, err := Decode(string(kind), SchemaString, body)
		if err != nil {
			return
		}
		if err := fuzzcheck.Check(body, v); err != nil {
			t.Fatalf("%s %x: %v", kind, body, err)
		}
		if _, _, err := Encode(v); err != nil {
			t.Fatalf("%s %x decoded but does not encode: %v", kind, body, err)
		}
	})
}

// FuzzDecodeToJSON renders anything as JSON: no panic, and what renders
// holds no more than its bytes could carry.
func FuzzDecodeToJSON(f *testing.F) {
	for _, g := range goldens {
		body, _, _ := Encode(g.v)
		f.Add(body)
	}
	seedHostile(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, body []byte) {
		js, err := ToJSON(body)
		if err != nil {
			return
		}
		if !json.Valid(js) {
			t.Fatalf("%x rendered as invalid JSON %s", body, js)
		}
		// What was rendered is the generic tree of body (JSON itself may
		// be longer: base64, quoted keys, escapes).
		var v any
		if err := Msgpack.Unmarshal(body, &v); err != nil {
			t.Fatalf("%x rendered but does not decode: %v", body, err)
		}
		if err := fuzzcheck.Check(body, v); err != nil {
			t.Fatalf("%x: %v", body, err)
		}
	})
}

// TestDecodePanicIsAnError: msgpack/v5 panics when an array-encoded struct
// holds a nil where a struct field (a time) is expected; a history event or
// a command shaped so must be refused, not crash the process reading it.
func TestDecodePanicIsAnError(t *testing.T) {
	for _, kind := range []Kind{KindTimerFired, KindTimerStarted} {
		_, err := Decode(string(kind), SchemaString, []byte{0x92, 0x30, 0xc0})
		if err == nil || !strings.Contains(err.Error(), "msgpack:") {
			t.Errorf("%s: %v, want a msgpack error", kind, err)
		}
	}
	if _, err := ToJSON([]byte{0x92, 0x30, 0xc0}); err != nil {
		t.Errorf("ToJSON of an honest array: %v", err)
	}
}

// BenchmarkCheckMsgpack is what the bounds add to each decode of a command,
// next to the decode itself.
func BenchmarkCheckMsgpack(b *testing.B) {
	body, _, _ := Encode(goldens[1].v)
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := CheckMsgpack(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(string(KindCommand), SchemaString, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
