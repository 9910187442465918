package daemon

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// statusMaxAge is how old the read of the kernel's table that Status
// answers with may be.
const statusMaxAge = time.Second

// kernelTable is the kernel's whole table as Status last read it. The
// requests of a second share one read, and one read runs at a time, so a
// client looping on /v1/status costs the kernel (and the sync and the HA
// pair, whose netlink calls queue behind it) at most one listing of every
// service and real a second. A sync that changed the kernel makes the
// next Status read it again. The table handed out is shared: read only.
type kernelTable struct {
	mu    sync.Mutex // held during a read: the requests that come meanwhile wait for it
	state ipvs.State
	at    time.Time
	stale atomic.Bool
}

// read returns the kernel's table, read at most statusMaxAge ago.
func (t *kernelTable) read(k ipvs.Kernel, now func() time.Time) (ipvs.State, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != nil && !t.stale.Load() && now().Sub(t.at) < statusMaxAge {
		return t.state, nil
	}
	t.stale.Store(false) // before the read: a sync that ends during it makes it stale again
	at := now()
	st, err := ipvs.Read(k, nil)
	if err != nil {
		t.state = nil
		return nil, err
	}
	t.state, t.at = st, at
	return st, nil
}

// changed says the kernel's table changed: the next read is a fresh one.
func (t *kernelTable) changed() { t.stale.Store(true) }
