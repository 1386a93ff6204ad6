//go:build unix

package bench

import (
	"runtime"
	"syscall"
	"time"
)

// usage is the process's CPU time so far, its peak resident set size and
// its heap allocations so far.
type usage struct {
	cpu    time.Duration
	maxRSS int64 // bytes
	// allocs and allocBytes count the heap allocations so far.
	allocs, allocBytes uint64
}

func rusage() usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	rss := int64(ru.Maxrss)
	if runtime.GOOS != "darwin" {
		rss *= 1024 // kilobytes everywhere but on macOS
	}
	u := usage{
		cpu:    time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		maxRSS: rss,
	}
	u.allocs, u.allocBytes = heapAllocs()
	return u
}
