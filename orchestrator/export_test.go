package orchestrator

import "time"

// SetUpdateWait sets how long an update request waits for its result
// before it is answered "pending", and the grace after which an
// unanswered one is sent again, until restore is called.
func SetUpdateWait(wait, grace time.Duration) (restore func()) {
	oldWait, oldGrace := defaultUpdateWait, updateGrace
	defaultUpdateWait, updateGrace = wait, grace
	return func() { defaultUpdateWait, updateGrace = oldWait, oldGrace }
}
