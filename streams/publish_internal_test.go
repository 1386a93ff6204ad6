package streams

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestParseAck: the acknowledgements the server writes from its template
// are read without JSON; everything else is left to the JSON decoder.
func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want *jetstream.PubAck // nil: not read, left to JSON
	}{
		{"stored", `{"stream":"JETFLOW_HISTORY","seq":42}`, &jetstream.PubAck{Stream: "JETFLOW_HISTORY", Sequence: 42}},
		{"stored in a domain", `{"stream":"S","domain":"hub","seq":7}`, &jetstream.PubAck{Stream: "S", Domain: "hub", Sequence: 7}},
		{"duplicate", `{"stream":"S","seq":18446744073709551615,"duplicate": true}`, &jetstream.PubAck{Stream: "S", Sequence: 18446744073709551615, Duplicate: true}},
		{"error", `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"S","seq":0}`, nil},
		{"batch", `{"stream":"S","seq":9,"batch":"b1","count":2}`, nil},
		{"counter", `{"stream":"S","seq":9,"val":"3"}`, nil},
		{"escaped name", `{"stream":"S\"x","seq":9}`, nil},
		{"sequence too large", `{"stream":"S","seq":18446744073709551616}`, nil},
		{"no sequence", `{"stream":"S","seq":}`, nil},
		{"empty stream", `{"stream":"","seq":1}`, nil},
		{"cut short", `{"stream":"S","seq":12`, nil},
		{"trailing bytes", `{"stream":"S","seq":12}x`, nil},
		{"other spacing", `{"stream": "S", "seq": 12}`, nil},
		{"empty", ``, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAck([]byte(tc.in))
			switch {
			case tc.want == nil && ok:
				t.Fatalf("parseAck(%s) = %+v, want it left to JSON", tc.in, got)
			case tc.want != nil && (!ok || *got != *tc.want):
				t.Fatalf("parseAck(%s) = %+v, %v; want %+v", tc.in, got, ok, *tc.want)
			}
			if ok {
				var viaJSON jetstream.PubAck
				if err := json.Unmarshal([]byte(tc.in), &viaJSON); err != nil || viaJSON != *got {
					t.Fatalf("JSON reads %s as %+v (%v), parseAck as %+v", tc.in, viaJSON, err, *got)
				}
			}
		})
	}
}

// TestPublishMsgAsJetStream: against a real server, the acknowledgements
// of a stored and of a deduplicated message take the template path, and
// publishMsg returns what jetstream's PublishMsg returns, refusals
// included.
func TestPublishMsgAsJetStream(t *testing.T) {
	js := runServer(t)
	nc := js.Conn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ACKS", Subjects: []string{"acks.>"}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	msg := func(subject, id string, expectLast string) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = []byte("x")
		m.Header.Set(jetstream.MsgIDHeader, id)
		if expectLast != "" {
			m.Header.Set(hdrExpectedLastSubjSeq, expectLast)
		}
		return m
	}

	// The raw acknowledgements of a new and of a duplicate message.
	for i, id := range []string{"raw-1", "raw-1"} {
		resp, err := nc.RequestMsgWithContext(ctx, msg("acks.raw", id, ""))
		if err != nil {
			t.Fatal(err)
		}
		ack, ok := parseAck(resp.Data)
		if !ok || ack.Stream != "ACKS" || ack.Sequence != 1 || ack.Duplicate != (i == 1) {
			t.Fatalf("the server acknowledged %s as %q: read %+v, %v; want the template path", id, resp.Data, ack, ok)
		}
	}

	for _, tc := range []struct {
		name string
		mine *nats.Msg
		js   *nats.Msg
	}{
		{"stored", msg("acks.a", "a-1", ""), msg("acks.b", "b-1", "")},
		{"duplicate", msg("acks.a", "a-1", ""), msg("acks.b", "b-1", "")},
		{"refused by its fence", msg("acks.a", "a-2", "99"), msg("acks.b", "b-2", "99")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mine, merr := publishMsg(ctx, js, tc.mine)
			theirs, jerr := js.PublishMsg(ctx, tc.js)
			var mineAPI, theirAPI *jetstream.APIError
			switch {
			case (merr == nil) != (jerr == nil):
				t.Fatalf("publishMsg: %v, PublishMsg: %v", merr, jerr)
			case merr != nil && (!errors.As(merr, &mineAPI) || !errors.As(jerr, &theirAPI) || mineAPI.ErrorCode != theirAPI.ErrorCode):
				t.Fatalf("publishMsg: %v, PublishMsg: %v; want the same API error", merr, jerr)
			case merr == nil && (mine.Stream != theirs.Stream || mine.Duplicate != theirs.Duplicate || mine.Sequence == 0):
				t.Fatalf("publishMsg: %+v, PublishMsg: %+v", *mine, *theirs)
			}
		})
	}
}

// runServer starts an embedded server for the test (natstest imports this
// package, so its tests inside the package start their own) and returns
// a JetStream context on it.
func runServer(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := StartServer(ServerConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
