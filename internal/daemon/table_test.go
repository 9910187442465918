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

// TestServicesShareStatusRead: the traffic metrics' read (Services) and
// /v1/status share the one read of the kernel a second: a scrape right
// after a status costs the kernel nothing, and the counters the kernel
// has are in what Services returns.
func TestServicesShareStatusRead(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, webConfig, kernel)
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	counters := ipvs.Stats{Conns: 4, InPkts: 40, OutPkts: 30, InBytes: 4000, OutBytes: 120000}
	reals := 0
	for k, svc := range kernel.State() {
		for rk := range svc.Reals {
			if err := kernel.SetStats(k, rk, counters); err != nil {
				t.Fatal(err)
			}
			reals++
		}
	}
	if reals == 0 {
		t.Fatal("the sync made no real")
	}
	h.clock.Advance(statusMaxAge) // what the sync read is older than a second now
	if _, err := h.d.Status(); err != nil {
		t.Fatal(err)
	}
	before := kernel.Calls()
	views, err := h.d.Services()
	if err != nil {
		t.Fatal(err)
	}
	if n := kernel.Calls() - before; n != 0 {
		t.Errorf("services after a status within the second made %d kernel calls, want none", n)
	}
	seen := 0
	for _, v := range views {
		for _, r := range v.Reals {
			if r.Stats != counters {
				t.Errorf("%s real %s: counters %+v, want the kernel's %+v", v.Name, r.Address, r.Stats, counters)
			}
			seen++
		}
	}
	if seen != reals {
		t.Errorf("services shows %d reals, the kernel has %d", seen, reals)
	}
}
