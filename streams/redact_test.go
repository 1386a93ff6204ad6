package streams

import "testing"

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://alice:s3cret@host:4222", "nats://***@host:4222"},
		{"connect tls://tok3n@a:1, nats://b:pw@c:2: refused", "connect tls://***@a:1, nats://***@c:2: refused"},
		{"nats://host:4222", "nats://host:4222"},
		{"ws://u:p%40ss@h/path@x", "ws://***@h/path@x"},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
