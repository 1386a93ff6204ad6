package streams

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The history of every workflow lives in one stream, HistoryStream, unless
// the deployment was made with its history partitioned
// (Topology.HistoryPartitions > 1): it then lives in K streams,
// JETFLOW_HISTORY_0 to JETFLOW_HISTORY_<K-1>, and each workflow in one of
// them, the partition its ID hashes to. Each stream has a write loop of its
// own, so K streams store, and with sync_interval always fsync, K writes at
// once where one stream stores one after the other.
//
// What is stored does not change: a partition stream captures
// wfp.<p>.>, and its subject transform stores wfp.<p>.<rest> as wf.<rest>.
// The subjects every reader, filter, fence and tool uses (wf.<id>.…) are
// the same in every layout; only a publish goes to wfp.<p>.<id>.…
// (PublishSubject), and a read or a consumer names the workflow's stream
// (HistoryStreamOf) rather than HistoryStream. Live (core NATS) listeners
// of history subjects hear the published subject (LiveFilter).
//
// A process serves one deployment: the layout is process-wide, set by
// Ensure and by Discover, which every orchestrator, participant and
// command calls once connected.

// PartitionedPrefix is the first token of a history subject as published
// to a partitioned history: wfp.<partition>.<workflow id>.…
const PartitionedPrefix = "wfp"

// HistoryPartitionStreamPrefix + partition number is a partition's stream.
const HistoryPartitionStreamPrefix = HistoryStream + "_"

// MaxHistoryPartitions bounds Topology.HistoryPartitions.
const MaxHistoryPartitions = 64

// metaPartitions is the metadata key of a partition stream that says how
// many partitions the history has.
const metaPartitions = "jetflow_history_partitions"

var (
	historyPartitions atomic.Int32
	// layoutTried is set once the layout was set, or looked up lazily
	// (knowLayout): a process that never called Ensure or Discover asks
	// the server once, at its first history read or write.
	layoutTried atomic.Bool
	layoutMu    sync.Mutex
	// layoutRetryAt (Unix nanoseconds) holds off the next lazy look-up
	// after one failed, so a server that does not answer costs one
	// look-up every layoutRetry, not one per history read or write.
	layoutRetryAt atomic.Int64
)

// layoutRetry is how long after a failed lazy look-up the next is tried.
const layoutRetry = 10 * time.Second

// knowLayout looks the layout up on the server when nothing in this
// process has set it yet, once: a library user's process that only starts
// or reads workflows writes and reads where the deployment keeps them. A
// failed look-up leaves the single stream, the default, until it is tried
// again layoutRetry later.
func knowLayout(ctx context.Context, js jetstream.JetStream) {
	if layoutTried.Load() || js == nil || time.Now().UnixNano() < layoutRetryAt.Load() {
		return
	}
	layoutMu.Lock()
	defer layoutMu.Unlock()
	if layoutTried.Load() || time.Now().UnixNano() < layoutRetryAt.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Asked again while there is no history yet; after a failed look-up
	// (a server restarting, a connection not yet up) asked again
	// layoutRetry later, the single stream assumed meanwhile. Every role
	// that reads or writes histories may read the layout's stream info
	// (internal/natsauth), but the carrier and the gateway, which learn
	// the layout from the stream names first (DiscoverByNames), so a
	// failure is not a refusal that would repeat for ever.
	k, err := Discover(ctx, js)
	switch {
	case err != nil:
		layoutRetryAt.Store(time.Now().Add(layoutRetry).UnixNano())
	case k > 0:
		layoutTried.Store(true)
	}
}

// LearnLayout looks the history layout up once for a process that has not
// called Ensure or Discover (see knowLayout): call it before naming a
// history stream yourself (HistoryStreamOf) in such a process.
func LearnLayout(ctx context.Context, js jetstream.JetStream) { knowLayout(ctx, js) }

// HistoryPartitions is the number of streams the history is partitioned
// over in this process's deployment: 1 is the single HistoryStream.
func HistoryPartitions() int {
	if k := historyPartitions.Load(); k > 1 {
		return int(k)
	}
	return 1
}

// SetHistoryPartitions sets the layout of this process's deployment (Ensure
// and Discover call it). k <= 1 is the single HistoryStream.
func SetHistoryPartitions(k int) {
	historyPartitions.Store(int32(max(1, min(k, MaxHistoryPartitions))))
	layoutTried.Store(true)
}

// PartitionOf returns the partition of history ID hid among k: every run of
// a workflow, and its run pointers, hash by the workflow ID, so they share a
// stream (a write is fenced on its own tree, and the run chain is read
// together).
func PartitionOf(hid string, k int) int {
	if k <= 1 {
		return 0
	}
	id, _, _ := strings.Cut(hid, RunSeparator)
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(k))
}

// HistoryPartitionStream is the stream of partition p of a partitioned
// history.
func HistoryPartitionStream(p int) string { return HistoryPartitionStreamPrefix + strconv.Itoa(p) }

// HistoryStreamOf is the stream holding the history of history ID hid.
func HistoryStreamOf(hid string) string {
	k := HistoryPartitions()
	if k == 1 {
		return HistoryStream
	}
	return HistoryPartitionStream(PartitionOf(hid, k))
}

// HistoryStreamFor is the stream holding history subject (or filter) s,
// wf.<id>.…: that of its workflow. A filter whose ID is a wildcard has no
// one stream; it gets the first, and must be asked of each
// (HistoryStreams).
func HistoryStreamFor(s string) string {
	id, _, _ := ParseSubject(s)
	return HistoryStreamOf(id)
}

// historyStreamsFor lists the streams that may hold messages on history
// subject or filter s: its workflow's, or every stream when the ID is a
// wildcard.
func historyStreamsFor(s string) []string {
	id, _, _ := ParseSubject(s)
	if id == "*" || id == ">" || id == "" {
		return HistoryStreams()
	}
	return []string{HistoryStreamOf(id)}
}

// HistoryStreams lists every stream of the history.
func HistoryStreams() []string {
	k := HistoryPartitions()
	if k == 1 {
		return []string{HistoryStream}
	}
	out := make([]string, k)
	for p := range out {
		out[p] = HistoryPartitionStream(p)
	}
	return out
}

// IsHistoryStream reports whether name is a stream of the history, in
// either layout.
func IsHistoryStream(name string) bool {
	if name == HistoryStream {
		return true
	}
	p, ok := strings.CutPrefix(name, HistoryPartitionStreamPrefix)
	if !ok {
		return false
	}
	_, err := strconv.Atoi(p)
	return err == nil
}

// PublishSubject is the subject a history message on stored subject s is
// published to: s itself in a single stream, wfp.<p>.<id>.… in a
// partitioned history. Any other subject is returned as it is.
func PublishSubject(s string) string {
	k := HistoryPartitions()
	if k == 1 {
		return s
	}
	rest, ok := strings.CutPrefix(s, "wf.")
	if !ok {
		return s
	}
	id, _, _ := strings.Cut(rest, ".")
	return PartitionedPrefix + "." + strconv.Itoa(PartitionOf(id, k)) + "." + rest
}

// LiveFilter is the core NATS subscription that hears the history messages
// stored on filter f as they are published: f in a single stream; in a
// partitioned history wfp.<p>.<id>.… for one workflow, wfp.*.… when the
// ID is a wildcard.
func LiveFilter(f string) string {
	if HistoryPartitions() == 1 {
		return f
	}
	rest, ok := strings.CutPrefix(f, "wf.")
	if !ok {
		return f
	}
	id, _, _ := strings.Cut(rest, ".")
	if id == "*" || id == ">" {
		return PartitionedPrefix + ".*." + rest
	}
	return PublishSubject(f)
}

// StoredSubject is the inverse of PublishSubject: the stored subject of a
// history message heard live (wfp.<p>.<rest> is stored as wf.<rest>).
func StoredSubject(s string) string {
	rest, ok := strings.CutPrefix(s, PartitionedPrefix+".")
	if !ok {
		return s
	}
	_, rest, ok = strings.Cut(rest, ".")
	if !ok {
		return s
	}
	return "wf." + rest
}

// historyPartitionConfig is the configuration of partition p of k: the
// single stream's, capturing wfp.<p>.> and storing it as wf.>.
func historyPartitionConfig(single jetstream.StreamConfig, p, k int) jetstream.StreamConfig {
	cfg := single
	src := PartitionedPrefix + "." + strconv.Itoa(p) + ".>"
	cfg.Name = HistoryPartitionStream(p)
	cfg.Description = fmt.Sprintf("jetflow workflow histories, partition %d of %d: published on %s, stored as wf.<workflow id>.>", p, k, src)
	cfg.Subjects = []string{src}
	cfg.SubjectTransform = &jetstream.SubjectTransformConfig{Source: src, Destination: "wf.>"}
	cfg.Metadata = map[string]string{metaPartitions: strconv.Itoa(k)}
	return cfg
}

// ErrLayoutMismatch means the history on the server has another layout
// than the one asked for: a history is partitioned when it is made, and
// stays as it was made.
var ErrLayoutMismatch = errors.New("jetflow: the history on the server has another layout")

// serverLayout reads the history layout the server holds: 1 for the single
// stream, K for a partitioned history, 0 when there is no history yet. Only
// when the single stream is missing is a partition stream asked for: a role
// whose permissions name the single stream alone reads nothing else.
func serverLayout(ctx context.Context, js jetstream.JetStream) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	single, err := existingConfig(ctx, js, HistoryStream)
	if err != nil {
		return 0, err
	}
	if single != nil {
		return 1, nil
	}
	first, err := existingConfig(ctx, js, HistoryPartitionStream(0))
	if err != nil || first == nil {
		return 0, err
	}
	k, err := strconv.Atoi(first.Metadata[metaPartitions])
	if err != nil || k < 2 || k > MaxHistoryPartitions {
		return 0, fmt.Errorf("%w: %s has no valid %s metadata (%q)", ErrLayoutMismatch, HistoryPartitionStream(0), metaPartitions, first.Metadata[metaPartitions])
	}
	return k, nil
}

// HistoryConsumers finds the history's layout (Discover) and creates or
// updates the durable consumer cfg on each of its streams: the
// orchestrator's and each participant's consumers exist once per
// partition.
func HistoryConsumers(ctx context.Context, js jetstream.JetStream, cfg jetstream.ConsumerConfig) ([]jetstream.Consumer, error) {
	if _, err := Discover(ctx, js); err != nil {
		return nil, err
	}
	var out []jetstream.Consumer
	for _, stream := range HistoryStreams() {
		cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, cons)
	}
	return out, nil
}

// PartitionsNamed is the number of partitions that stream (or stream
// directory) names show: the highest JETFLOW_HISTORY_<p> plus one, 0 for
// none.
func PartitionsNamed(names []string) int {
	k := 0
	for _, name := range names {
		if p, ok := strings.CutPrefix(name, HistoryPartitionStreamPrefix); ok {
			if n, err := strconv.Atoi(p); err == nil && n >= 0 && n < MaxHistoryPartitions {
				k = max(k, n+1)
			}
		}
	}
	return k
}

// DiscoverByNames is Discover for a role that may list the stream names
// ($JS.API.STREAM.NAMES) but not read a stream's information (the carrier,
// the payment gateway): the single stream's name, or the partitions'.
func DiscoverByNames(ctx context.Context, js jetstream.JetStream) (int, error) {
	var all []string
	single := false
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		single = single || name == HistoryStream
		all = append(all, name)
	}
	if err := names.Err(); err != nil {
		return 0, fmt.Errorf("discover the history layout: %w", err)
	}
	k := PartitionsNamed(all)
	switch {
	case single:
		k = 1
	case k == 1:
		return 0, fmt.Errorf("discover the history layout: %w: %s alone", ErrLayoutMismatch, HistoryPartitionStream(0))
	}
	if k > 0 {
		SetHistoryPartitions(k)
	}
	return k, nil
}

// Discover reads the history layout of the deployment js is connected to
// and sets this process's (SetHistoryPartitions). With no history made yet
// it leaves the layout as it is, and reports 0.
func Discover(ctx context.Context, js jetstream.JetStream) (int, error) {
	k, err := serverLayout(ctx, js)
	if err != nil {
		return 0, fmt.Errorf("discover the history layout: %w", err)
	}
	if k > 0 {
		SetHistoryPartitions(k)
	}
	return k, nil
}
