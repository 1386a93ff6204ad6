package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// RetentionSample is the state of the server at one moment of a run with
// a retention window: what the history, the archive, the index and the
// idempotency bucket hold, and the memory of the process (the embedded
// server's included).
type RetentionSample struct {
	Seconds float64 `json:"seconds"`
	// Archived is the number of archive records.
	Archived uint64 `json:"archived"`
	// HistorySubjects and HistoryMsgs are JETFLOW_HISTORY's; HistoryBytes
	// its stored bytes.
	HistorySubjects uint64 `json:"history_subjects"`
	HistoryMsgs     uint64 `json:"history_msgs"`
	HistoryBytes    uint64 `json:"history_bytes"`
	ArchiveBytes    uint64 `json:"archive_bytes"`
	IndexMsgs       uint64 `json:"index_msgs"`
	IdemSubjects    uint64 `json:"idempotency_subjects"`
	// SignalSubjects are JETFLOW_SIGNALS' subjects: one per workflow and
	// signal name until the archiver purges a workflow's recorded signals
	// (a run with --pickup signal has one per order).
	SignalSubjects uint64 `json:"signal_subjects"`
	// DiskBytes is the size of the embedded server's store directory.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
	// RSSBytes is the process's resident memory; HeapBytes its live Go
	// heap as the last collection marked it (the server's subject index
	// lives there). Sampling does not collect: a forced collection of a
	// heap of a gigabyte every 10 s took a sizeable share of the CPU the
	// run measures.
	RSSBytes  uint64 `json:"rss_bytes"`
	HeapBytes uint64 `json:"heap_bytes"`
}

// sampleRetention records a RetentionSample every every until stop is
// called, which returns the samples. Each is also printed to progress.
func sampleRetention(ctx context.Context, js jetstream.JetStream, storeDir string, every time.Duration, progress io.Writer) (stop func() []RetentionSample) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu      sync.Mutex
		samples []RetentionSample
		wg      sync.WaitGroup
	)
	begin := time.Now()
	take := func() {
		s, err := retentionSample(ctx, js, storeDir)
		if err != nil {
			return
		}
		s.Seconds = time.Since(begin).Seconds()
		fmt.Fprintf(progress, "bench: retention t=%4.0fs archived %d history %d subjects %d msgs %s, archive %s, index %d, idempotency %d subjects, signals %d subjects, disk %s, rss %s heap %s\n",
			s.Seconds, s.Archived, s.HistorySubjects, s.HistoryMsgs, mib(s.HistoryBytes), mib(s.ArchiveBytes), s.IndexMsgs, s.IdemSubjects, s.SignalSubjects, mib(uint64(s.DiskBytes)), mib(s.RSSBytes), mib(s.HeapBytes))
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				take()
			}
		}
	}()
	return func() []RetentionSample {
		cancel()
		wg.Wait()
		take2 := context.Background()
		if s, err := retentionSample(take2, js, storeDir); err == nil {
			s.Seconds = time.Since(begin).Seconds()
			samples = append(samples, s)
		}
		return samples
	}
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func retentionSample(ctx context.Context, js jetstream.JetStream, storeDir string) (RetentionSample, error) {
	var s RetentionSample
	state := func(name string) (jetstream.StreamState, error) {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return jetstream.StreamState{}, err
		}
		return st.CachedInfo().State, nil
	}
	for _, name := range streams.HistoryStreams() {
		h, err := state(name)
		if err != nil {
			return s, err
		}
		s.HistorySubjects += h.NumSubjects
		s.HistoryMsgs += h.Msgs
		s.HistoryBytes += h.Bytes
	}
	if a, err := state(streams.ArchiveStream); err == nil {
		s.Archived, s.ArchiveBytes = a.Msgs, a.Bytes
	}
	if ix, err := state(streams.IndexStream); err == nil {
		s.IndexMsgs = ix.Msgs
	}
	if kv, err := state("KV_" + streams.IdempotencyBucket); err == nil {
		s.IdemSubjects = kv.NumSubjects
	}
	if sig, err := state(streams.SignalsStream); err == nil {
		s.SignalSubjects = sig.NumSubjects
	}
	if storeDir != "" {
		s.DiskBytes = dirSize(storeDir)
	}
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	if live[0].Value.Kind() == metrics.KindUint64 {
		s.HeapBytes = live[0].Value.Uint64()
	}
	s.RSSBytes = rss()
	return s, nil
}

// dirSize is the size of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// rss reads the process's resident set size from /proc (0 elsewhere).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
