package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Spec is a parsed schedule specification: when the runs are due. Times
// are in UTC.
//
// The forms are the five cron fields "minute hour day-of-month month
// day-of-week" (each "*", a number, a range "a-b", a step "*/n" or
// "a-b/n", or a comma-separated list of those; day of week 0-6 from
// Sunday, 7 also Sunday; when both day fields are restricted a day
// matching either is due, as cron does), the descriptors @hourly, @daily
// (or @midnight), @weekly, @monthly, and "@every <duration>" (at least a
// second), whose runs are aligned on multiples of the duration since the
// Unix epoch so that every process computes the same slots.
type Spec struct {
	text  string
	every time.Duration
	// cron fields as bit sets.
	minute, hour, dom, month, dow uint64
	domStar, dowStar              bool
}

// String returns the specification as written.
func (s Spec) String() string { return s.text }

// Parse parses a schedule specification; the error names the bad field.
func Parse(text string) (Spec, error) {
	t := strings.TrimSpace(text)
	switch t {
	case "@hourly":
		return parseCron(text, "0 * * * *")
	case "@daily", "@midnight":
		return parseCron(text, "0 0 * * *")
	case "@weekly":
		return parseCron(text, "0 0 * * 0")
	case "@monthly":
		return parseCron(text, "0 0 1 * *")
	}
	if d, ok := strings.CutPrefix(t, "@every "); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return Spec{}, fmt.Errorf("schedule %q: %w", text, err)
		}
		if every < time.Second {
			return Spec{}, fmt.Errorf("schedule %q: want an interval of at least 1s", text)
		}
		return Spec{text: text, every: every}, nil
	}
	if strings.HasPrefix(t, "@") {
		return Spec{}, fmt.Errorf("schedule %q: want @hourly, @daily, @midnight, @weekly, @monthly, @every <duration> or five cron fields", text)
	}
	return parseCron(text, t)
}

func parseCron(text, fields string) (Spec, error) {
	f := strings.Fields(fields)
	if len(f) != 5 {
		return Spec{}, fmt.Errorf("schedule %q: want five fields (minute hour day-of-month month day-of-week), got %d", text, len(f))
	}
	s := Spec{text: text}
	var err error
	names := []string{"minute", "hour", "day-of-month", "month", "day-of-week"}
	bounds := [][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}
	sets := []*uint64{&s.minute, &s.hour, &s.dom, &s.month, &s.dow}
	for i := range f {
		if *sets[i], err = parseField(f[i], bounds[i][0], bounds[i][1]); err != nil {
			return Spec{}, fmt.Errorf("schedule %q: %s %q: %w", text, names[i], f[i], err)
		}
	}
	if s.dow&(1<<7) != 0 {
		s.dow |= 1 // 7 is Sunday too
	}
	s.domStar, s.dowStar = f[2] == "*", f[4] == "*"
	return s, nil
}

// parseField parses one cron field into a bit set of the values in
// [lo, hi].
func parseField(field string, lo, hi int) (uint64, error) {
	var set uint64
	for _, part := range strings.Split(field, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("step %q: want a positive number", stepText)
			}
			step = n
		}
		from, to := lo, hi
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if from, err = value(a, lo, hi); err != nil {
				return 0, err
			}
			if to, err = value(b, lo, hi); err != nil {
				return 0, err
			}
			if to < from {
				return 0, fmt.Errorf("range %s: the end is before the start", rng)
			}
		default:
			v, err := value(rng, lo, hi)
			if err != nil {
				return 0, err
			}
			from, to = v, v
			if hasStep {
				to = hi
			}
		}
		for v := from; v <= to; v += step {
			set |= 1 << v
		}
	}
	return set, nil
}

func value(s string, lo, hi int) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%q: want a number from %d to %d", s, lo, hi)
	}
	return v, nil
}

// Next returns the first due time strictly after t, in UTC. A cron spec
// that is never due (the 31st of February) returns the zero time.
func (s Spec) Next(t time.Time) time.Time {
	t = t.UTC()
	if s.every > 0 {
		n := t.Truncate(s.every) // aligned on the epoch: Truncate works on absolute time
		return n.Add(s.every)
	}
	t = t.Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(5, 0, 0)
	for t.Before(limit) {
		if s.month&(1<<int(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if s.hour&(1<<t.Hour()) == 0 {
			t = t.Truncate(time.Hour).Add(time.Hour)
			continue
		}
		if s.minute&(1<<t.Minute()) == 0 {
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

func (s Spec) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<t.Day()) != 0
	dow := s.dow&(1<<int(t.Weekday())) != 0
	switch {
	case s.domStar && s.dowStar:
		return true
	case s.domStar:
		return dow
	case s.dowStar:
		return dom
	}
	return dom || dow
}
