package importer

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/internal/progress"
)

// tickingClock is a fake clock that moves 10 ms each time it is read: work
// that reads it once a service takes 10 ms a service, exactly.
type tickingClock struct{ *clockwork.FakeClock }

func (c tickingClock) Now() time.Time {
	c.Advance(10 * time.Millisecond)
	return c.FakeClock.Now()
}

var importLine = regexp.MustCompile(`^\[INFO\]  import: imported=(\d+) of=(\d+)( done=true took=\S+)?$`)

// TestImportShowsProgress: an import of 500 virtual services at 10 ms each
// (5 s) logs how far it is at most every 2 s and ends with a line that
// says done; one of 10 services (100 ms) logs nothing. Both importers.
func TestImportShowsProgress(t *testing.T) {
	ld := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "virtual=10.0.%d.%d:80\n\treal=10.1.%d.%d:80 gate\n\tservice=http\n", i/250, i%250+1, i/250, i%250+1)
		}
		return b.String()
	}
	ka := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "virtual_server 10.0.%d.%d 80 {\n  lb_kind DR\n  protocol TCP\n  real_server 10.1.%d.%d 80 {\n  }\n}\n", i/250, i%250+1, i/250, i%250+1)
		}
		return b.String()
	}
	for _, c := range []struct {
		tool  string
		src   func(int) string
		parse func(string, []byte, *progress.Reporter) (*Result, error)
	}{{"ldirectord", ld, ParseLdirectord}, {"keepalived", ka, ParseKeepalived}} {
		for _, n := range []int{10, 500} {
			t.Run(fmt.Sprintf("%s/%d", c.tool, n), func(t *testing.T) {
				var buf bytes.Buffer
				log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info, DisableTime: true})
				clock := tickingClock{clockwork.NewFakeClock()}
				res, err := c.parse("big", []byte(c.src(n)), progress.New(log, clock, "import", "imported", 0))
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Services) != n {
					t.Fatalf("%d services imported, want %d", len(res.Services), n)
				}
				var got [][]string
				for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
					if m := importLine.FindStringSubmatch(l); m != nil {
						got = append(got, m)
					}
				}
				if n == 10 {
					if len(got) != 0 {
						t.Fatalf("a short import logged progress:\n%s", buf.String())
					}
					return
				}
				// 5 s: lines at 2 s and 4 s, and the last.
				if len(got) != 3 {
					t.Fatalf("%d progress lines, want 3:\n%s", len(got), buf.String())
				}
				for _, m := range got {
					if m[2] != fmt.Sprint(n) {
						t.Errorf("%q: of is not %d", m[0], n)
					}
				}
				if last := got[2]; last[1] != fmt.Sprint(n) || last[3] == "" {
					t.Errorf("last line %q does not say done with %d", last[0], n)
				}
			})
		}
	}
}
