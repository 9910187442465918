package ha

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// memLease is lock_key in memory: compare-and-set writes, a watch that
// sees every change.
type memLease struct {
	mu      sync.Mutex
	present bool
	lease   Lease
	index   uint64
	changed chan struct{}
}

func newMemLease() *memLease { return &memLease{index: 1, changed: make(chan struct{})} }

func (l *memLease) obs() Observation {
	if !l.present {
		return Observation{Index: l.index}
	}
	return Observation{Present: true, Lease: l.lease, Index: l.index}
}

func (l *memLease) Watch(ctx context.Context, observe func(Observation, error)) {
	for {
		l.mu.Lock()
		o, ch := l.obs(), l.changed
		l.mu.Unlock()
		observe(o, nil)
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

func (l *memLease) Write(_ context.Context, w Write) WriteResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.obs()
	cur.Fresh = true
	if w.Index == 0 && l.present || w.Index != 0 && (!l.present || w.Index != l.index) {
		return WriteResult{Write: w, Current: &cur}
	}
	l.index++
	l.present, l.lease = true, w.Lease
	close(l.changed)
	l.changed = make(chan struct{})
	return WriteResult{Write: w, OK: true, Index: l.index}
}

// noPeer is a heartbeat transport with nobody at the other end.
type noPeer struct{ recv chan Heartbeat }

func (noPeer) Send(Heartbeat) error         { return errNoPeer }
func (n noPeer) Received() <-chan Heartbeat { return n.recv }

// startAlone runs one director against lease with carrier's answers, and
// waits for it to be active.
func startAlone(t *testing.T, lease LeaseStore, carrier func() (bool, error)) (*Runner, *world) {
	t.Helper()
	w := &world{active: map[string]bool{}}
	r, err := NewRunner(Options{Name: "a", Lease: lease, Transport: noPeer{make(chan Heartbeat)}, Roles: &fakeRoles{w: w, name: "a"},
		Carrier: carrier, Logger: hclog.New(&hclog.LoggerOptions{Name: "a", Level: hclog.Info})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, w
}

// One failed read of the carrier is not a lost carrier: the active stays;
// reads that keep failing are.
func TestCarrierReadFailsOnce(t *testing.T) {
	var fails atomic.Int32
	r, w := startAlone(t, newMemLease(), func() (bool, error) {
		if fails.Load() > 0 {
			fails.Add(-1)
			return false, errors.New("netlink: no buffer space available")
		}
		return true, nil
	})
	if !r.WaitRole(Active, 5*time.Second) {
		t.Fatalf("alone, not active: %+v", r.State())
	}
	fails.Store(1)
	deadline := time.Now().Add(5 * time.Second)
	for fails.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a few ticks after the failed read
	w.mu.Lock()
	changes := w.changes
	w.mu.Unlock()
	if st := r.State(); st.Role != "active" || st.Takeovers != 1 {
		t.Fatalf("one failed carrier read made the active step down: %s; changes %q", st.LastStepDown, changes)
	}
	fails.Store(1000)
	if !r.WaitRole(Standby, 5*time.Second) {
		t.Fatal("carrier reads failing for good, the active stays active")
	}
}
