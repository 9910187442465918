package daemon

import (
	"sync"
	"testing"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// TestStatusSharesOneReadOfTheKernel: requests for the status within a
// second share one read of the kernel's table, however many come at once;
// the table is read again after a second, or once a sync changed it.
func TestStatusSharesOneReadOfTheKernel(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, webConfig, kernel)
	h.snapshot(web1(catalog.Passing))
	h.untilNext()

	statuses := func(n int) (reads int) {
		t.Helper()
		before := kernel.Calls()
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if st, err := h.d.Status(); err != nil || len(st.Services) != 2 {
					t.Errorf("status: %d services (%v), want 2", len(st.Services), err)
				}
			}()
		}
		wg.Wait()
		return kernel.Calls() - before
	}
	one := statuses(1) // a listing and the reals of each of the two services
	if one == 0 {
		t.Fatal("the first status read nothing")
	}
	if again := statuses(50); again != 0 {
		t.Errorf("50 statuses within the second made %d kernel calls, want none", again)
	}
	h.clock.Advance(statusMaxAge)
	if got := statuses(50); got != one {
		t.Errorf("50 statuses a second later made %d kernel calls, want one read (%d)", got, one)
	}

	// A sync that changes the kernel: the next status shows it.
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	st, err := h.d.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Name == "web" && len(s.Reals) != 2 {
			t.Errorf("after a sync added a real, status shows web with %d reals, want 2", len(s.Reals))
		}
	}
}
