package ipvs

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// The table is its own: neither the state it was made from nor the copies
// it hands out change it.
func TestMemKernelCopies(t *testing.T) {
	web := svcKey("10.0.0.1:80")
	st := State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1)})}
	k := NewMemKernel(st)
	st[web].Reals[realKey("10.1.0.12:80")] = gate(2)
	got := k.State()
	got[web].Scheduler = "rr"
	delete(got[web].Reals, realKey("10.1.0.11:80"))
	if want := "-A -t 10.0.0.1:80 -s wlc\n-a -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 1\n"; k.State().String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", k.State(), want)
	}
}

// Concurrent callers (run with -race) all get their writes in.
func TestMemKernelConcurrentUse(t *testing.T) {
	k := NewMemKernel(State{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), Port: 80}
			// (t.Error, not must: t.Fatal ends only the test's goroutine.)
			if err := k.AddService(key, &Service{Scheduler: "rr", Netmask: 0xffffffff}); err != nil {
				t.Error(err)
			}
			if err := k.AddReal(key, realKey("10.1.0.11:80"), gate(i)); err != nil {
				t.Error(err)
			}
			if _, err := Read(k, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st := k.State()
	for key, s := range st {
		if s.Reals[realKey("10.1.0.11:80")].Weight != int(key.Addr.As4()[3]) {
			t.Errorf("%s: %v", key, s.Reals)
		}
	}
	if len(st) != 8 {
		t.Errorf("%d services, want 8", len(st))
	}
}
