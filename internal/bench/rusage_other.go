//go:build !unix

package bench

import "time"

// usage is the process's CPU time so far and its peak resident set size;
// not measured on this platform.
type usage struct {
	cpu    time.Duration
	maxRSS int64
}

func rusage() usage { return usage{} }
