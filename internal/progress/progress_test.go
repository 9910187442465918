package progress_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/internal/progress"
)

func logger(buf *bytes.Buffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Info, DisableTime: true})
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Work that ends within 2 s logs nothing, however many units it counts.
func TestShortWorkIsQuiet(t *testing.T) {
	var buf bytes.Buffer
	clock := clockwork.NewFakeClock()
	r := progress.New(logger(&buf), clock, "first sync", "read", 10)
	for i := 1; i <= 10; i++ {
		clock.Advance(199 * time.Millisecond)
		r.Update(i)
	}
	r.Done(10)
	if got := lines(&buf); got != nil {
		t.Fatalf("short work logged %q", got)
	}
}

// Work of 10 s counted every 100 ms logs one line every 2 s at most, the
// count at that moment, and a last line that says done.
func TestLongWorkLogsEveryTwoSeconds(t *testing.T) {
	var buf bytes.Buffer
	clock := clockwork.NewFakeClock()
	start := clock.Now()
	r := progress.New(logger(&buf), clock, "first sync", "read", 100)
	var at []time.Duration
	for i := 1; i <= 100; i++ {
		clock.Advance(100 * time.Millisecond)
		before := len(lines(&buf))
		r.Update(i)
		if len(lines(&buf)) > before {
			at = append(at, clock.Since(start))
		}
	}
	r.Done(100)
	got := lines(&buf)
	want := []string{
		`[INFO]  first sync: read=20 of=100`,
		`[INFO]  first sync: read=40 of=100`,
		`[INFO]  first sync: read=60 of=100`,
		`[INFO]  first sync: read=80 of=100`,
		`[INFO]  first sync: read=100 of=100`,
		`[INFO]  first sync: read=100 of=100 done=true took=10s`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := 1; i < len(at); i++ {
		if d := at[i] - at[i-1]; d < progress.Every {
			t.Errorf("lines %d and %d %v apart, less than %v", i-1, i, d, progress.Every)
		}
	}
}

// Work that took 2 s or more says it is done even when no Update came in
// between (one long step), and only once.
func TestOneLongStepSaysDone(t *testing.T) {
	var buf bytes.Buffer
	clock := clockwork.NewFakeClock()
	r := progress.New(logger(&buf), clock, "import", "parsed", 3)
	clock.Advance(2500 * time.Millisecond)
	r.Done(3)
	r.Done(3)
	r.Update(3)
	want := `[INFO]  import: parsed=3 of=3 done=true took=2.5s`
	if got := lines(&buf); len(got) != 1 || got[0] != want {
		t.Fatalf("lines %q, want [%q]", got, want)
	}
}

// A nil Reporter does nothing: callers that were given none need no branch.
func TestNilReporter(t *testing.T) {
	var r *progress.Reporter
	r.Update(1)
	r.SetTotal(2)
	r.Done(2)
}
