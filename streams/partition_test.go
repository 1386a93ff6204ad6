package streams

import (
	"strconv"
	"testing"
)

// The layout itself (PublishSubject, LiveFilter, Ensure of a partitioned
// history) is process-wide, so it is tested where a whole test binary runs
// partitioned: test/partitioned_test.go. These are the pure parts.

func TestPartitionOfKeepsAWorkflowsRunsTogether(t *testing.T) {
	const k = 8
	counts := make([]int, k)
	for i := range 8000 {
		id := "order-" + strconv.Itoa(i)
		p := PartitionOf(id, k)
		if p < 0 || p >= k {
			t.Fatalf("PartitionOf(%q, %d) = %d", id, k, p)
		}
		counts[p]++
		for _, hid := range []string{RunID(id, 2), RunID(id, 17), id + RunSeparator + runsToken} {
			if q := PartitionOf(hid, k); q != p {
				t.Fatalf("%s is in partition %d, its workflow %s in %d: a run must share its workflow's stream", hid, q, id, p)
			}
		}
	}
	// FNV-1a spreads sequential IDs evenly: each partition within 20% of
	// its share.
	for p, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("partition %d holds %d of 8000 IDs: %v", p, n, counts)
		}
	}
	if PartitionOf("x", 1) != 0 || PartitionOf("x", 0) != 0 {
		t.Error("a single stream is partition 0")
	}
}

func TestStoredSubjectUndoesThePartitionToken(t *testing.T) {
	for in, want := range map[string]string{
		"wfp.3.o-1.cmd.2.payment.charge": "wf.o-1.cmd.2.payment.charge",
		"wfp.0.o-1=runs.2":               "wf.o-1=runs.2",
		"wf.o-1.start":                   "wf.o-1.start",
		"wfp.3":                          "wfp.3",
		"order.created":                  "order.created",
	} {
		if got := StoredSubject(in); got != want {
			t.Errorf("StoredSubject(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHistoryPartitionConfigStoresTheSingleStreamsSubjects(t *testing.T) {
	single := Topology{}.StreamConfigs()[0]
	if single.Name != HistoryStream {
		t.Fatalf("first stream %s", single.Name)
	}
	cfg := historyPartitionConfig(single, 5, 8)
	if cfg.Name != "JETFLOW_HISTORY_5" || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "wfp.5.>" {
		t.Fatalf("partition 5: %s %v", cfg.Name, cfg.Subjects)
	}
	if cfg.SubjectTransform == nil || cfg.SubjectTransform.Source != "wfp.5.>" || cfg.SubjectTransform.Destination != "wf.>" {
		t.Fatalf("partition 5 transform: %+v", cfg.SubjectTransform)
	}
	if cfg.Metadata[metaPartitions] != "8" {
		t.Errorf("metadata %v", cfg.Metadata)
	}
	// Everything that makes a history sound is the single stream's.
	if cfg.MaxMsgsPerSubject != 1 || !cfg.DiscardNewPerSubject || !cfg.DenyDelete || !cfg.AllowDirect || cfg.Duplicates != single.Duplicates {
		t.Errorf("partition 5 lost a property of the history stream: %+v", cfg)
	}
	for name, want := range map[string]bool{HistoryStream: true, "JETFLOW_HISTORY_0": true, "JETFLOW_HISTORY_63": true, "JETFLOW_HISTORY_x": false, IndexStream: false} {
		if IsHistoryStream(name) != want {
			t.Errorf("IsHistoryStream(%s) = %v", name, !want)
		}
	}
	cfgs := Topology{HistoryPartitions: 4}.StreamConfigs()
	var index []string
	for _, c := range cfgs {
		if c.Name == IndexStream {
			for _, s := range c.Sources {
				index = append(index, s.Name)
			}
		}
		if c.Name == HistoryStream {
			t.Error("a partitioned topology still has the single history stream")
		}
	}
	if len(index) != 4 || index[0] != "JETFLOW_HISTORY_0" || index[3] != "JETFLOW_HISTORY_3" {
		t.Errorf("the index sources %v, want the 4 partitions", index)
	}
}

func TestPartitionsNamed(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  int
	}{
		{nil, 0},
		{[]string{HistoryStream, IndexStream}, 0},
		{[]string{"JETFLOW_HISTORY_1", "JETFLOW_HISTORY_0", "JETFLOW_HISTORY_x", "JETFLOW_HISTORY_-1"}, 2},
		{[]string{"JETFLOW_HISTORY_7", OrdersStream}, 8},
	} {
		if got := PartitionsNamed(tc.names); got != tc.want {
			t.Errorf("PartitionsNamed(%v) = %d, want %d", tc.names, got, tc.want)
		}
	}
}
