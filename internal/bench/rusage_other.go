//go:build !unix

package bench

import "time"

// usage is the process's CPU time so far and its peak resident set size,
// not measured on this platform, and its heap allocations so far.
type usage struct {
	cpu                time.Duration
	maxRSS             int64
	allocs, allocBytes uint64
}

func rusage() usage {
	var u usage
	u.allocs, u.allocBytes = heapAllocs()
	return u
}
