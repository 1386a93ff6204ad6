package streams

import (
	"strconv"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// FenceOverhead bounds the bytes the fence headers (Append, PublishFirst)
// add to a message: a message of MsgSize up to the max payload minus this
// is accepted once fenced.
const FenceOverhead = 512

// DefaultMaxPayload is the server's default max payload (1 MiB), used when
// a connection does not report one.
const DefaultMaxPayload = 1 << 20

// MaxPayload is the largest message the server behind nc accepts, headers
// included.
func MaxPayload(nc *nats.Conn) int {
	if nc != nil {
		if n := nc.MaxPayload(); n > 0 {
			return int(n)
		}
	}
	return DefaultMaxPayload
}

// MsgSize is the size of m as the server weighs it against its max
// payload: the headers as sent on the wire plus the body. The subject is
// added too, so the figure errs on the safe side.
func MsgSize(m *nats.Msg) int {
	return len(m.Subject) + HeaderSize(m.Header) + len(m.Data)
}

// HeaderSize is the size of h on the wire: "NATS/1.0\r\n", one
// "Key: value\r\n" line per value and a closing "\r\n"; 0 without headers.
func HeaderSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// Clip returns s whole when it has at most n bytes, else its first n bytes
// (cut on a UTF-8 boundary) followed by "… (N bytes)". Error texts and
// reasons that may quote input go through it, so a hostile value cannot
// make a log line or a dead letter as large as itself.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (" + strconv.Itoa(len(s)) + " bytes)"
}
