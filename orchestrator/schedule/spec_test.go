package schedule

import (
	"strings"
	"testing"
	"time"
)

func TestSpecNext(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name, spec, after, want string
	}{
		{"daily at three, later the same day", "0 3 * * *", "2026-12-01T02:59:59Z", "2026-12-01T03:00:00Z"},
		{"daily at three, exactly at three is the next day", "0 3 * * *", "2026-12-01T03:00:00Z", "2026-12-02T03:00:00Z"},
		{"@daily is midnight", "@daily", "2026-12-31T12:00:00Z", "2027-01-01T00:00:00Z"},
		{"@hourly", "@hourly", "2026-12-01T10:30:00Z", "2026-12-01T11:00:00Z"},
		{"every 15 minutes", "*/15 * * * *", "2026-12-01T10:31:00Z", "2026-12-01T10:45:00Z"},
		{"weekdays at 9:30", "30 9 * * 1-5", "2026-12-04T10:00:00Z", "2026-12-07T09:30:00Z"}, // Friday -> Monday
		{"sunday as 7", "0 0 * * 7", "2026-12-01T00:00:00Z", "2026-12-06T00:00:00Z"},
		{"either day field matches", "0 0 1 * 0", "2026-12-02T00:00:00Z", "2026-12-06T00:00:00Z"},
		{"list of hours", "0 6,18 * * *", "2026-12-01T07:00:00Z", "2026-12-01T18:00:00Z"},
		{"29th of february", "0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"every 6h aligned on the epoch", "@every 6h", "2026-12-01T07:00:00Z", "2026-12-01T12:00:00Z"},
		{"a local time is read in UTC", "0 3 * * *", "2026-12-01T04:00:00+02:00", "2026-12-01T03:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(at(tc.after)); !got.Equal(at(tc.want)) || got.Location() != time.UTC {
				t.Errorf("Next(%s) = %s, want %s", tc.after, got, tc.want)
			}
		})
	}
	if got := mustParse(t, "0 0 31 2 *").Next(at("2026-01-01T00:00:00Z")); !got.IsZero() {
		t.Errorf("the 31st of February is due %s", got)
	}
}

func mustParse(t *testing.T, s string) Spec {
	t.Helper()
	v, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSpecErrorsNameTheField(t *testing.T) {
	for spec, want := range map[string]string{
		"0 24 * * *":  `hour "24": "24": want a number from 0 to 23`,
		"* * *":       "want five fields",
		"*/0 * * * *": `minute "*/0": step "0": want a positive number`,
		"0 0 5-1 * *": "the end is before the start",
		"@yearly":     "want @hourly, @daily",
		"@every 10ms": "at least 1s",
		"@every x":    `time: invalid duration "x"`,
	} {
		if _, err := Parse(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
}
