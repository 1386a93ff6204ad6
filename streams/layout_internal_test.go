package streams

import (
	"context"
	"testing"
	"time"
)

// A process that never called Ensure or Discover looks the layout up at
// its first history read or write; a look-up that failed (here: its
// context was done) is not final: it is held off for layoutRetry, then
// asked again, and the partitioned layout is found.
func TestLazyLayoutIsAskedAgainAfterAFailure(t *testing.T) {
	k, tried := historyPartitions.Load(), layoutTried.Load()
	t.Cleanup(func() { historyPartitions.Store(k); layoutTried.Store(tried); layoutRetryAt.Store(0) })
	js := runServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Ensure(ctx, js, Topology{HistoryPartitions: 4}); err != nil {
		t.Fatal(err)
	}
	// A library process: nothing set.
	historyPartitions.Store(1)
	layoutTried.Store(false)
	layoutRetryAt.Store(0)

	done, stop := context.WithCancel(ctx)
	stop()
	knowLayout(done, js)
	if HistoryPartitions() != 1 || layoutTried.Load() || layoutRetryAt.Load() == 0 {
		t.Fatalf("after a failed look-up: %d partitions, tried %v, retry at %d; want the single stream and a retry set", HistoryPartitions(), layoutTried.Load(), layoutRetryAt.Load())
	}
	knowLayout(ctx, js)
	if HistoryPartitions() != 1 {
		t.Fatal("asked again before layoutRetry passed")
	}
	layoutRetryAt.Store(time.Now().Add(-time.Second).UnixNano()) // layoutRetry has passed
	knowLayout(ctx, js)
	if HistoryPartitions() != 4 || !layoutTried.Load() {
		t.Fatalf("after the retry: %d partitions, tried %v; want the server's 4", HistoryPartitions(), layoutTried.Load())
	}
}
