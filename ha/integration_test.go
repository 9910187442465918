package ha

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// Two runners in one process against a real Consul agent, with real
// memberlist heartbeats on loopback, and fakes for the host. Faults are
// cut in through the wrappers.

type world struct {
	mu      sync.Mutex
	active  map[string]bool
	overlap string
	changes []string
}

type fakeRoles struct {
	w        *world
	name     string
	announce atomic.Int32
}

func (f *fakeRoles) BecomeActive(uint64) error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	for n, a := range f.w.active {
		if a && n != f.name && f.w.overlap == "" {
			f.w.overlap = f.name + " became active while " + n + " was"
		}
	}
	f.w.active[f.name] = true
	f.w.changes = append(f.w.changes, f.name+" active")
	return nil
}

func (f *fakeRoles) StepDown(reason string) error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.active[f.name] = false
	f.w.changes = append(f.w.changes, f.name+" standby: "+reason)
	return nil
}

func (f *fakeRoles) Announce() error     { f.announce.Add(1); return nil }
func (f *fakeRoles) KeepVIPs() error     { return nil }
func (f *fakeRoles) DaemonState() string { return "backup" }

// cutLease fails every read and write while cut.
type cutLease struct {
	*ConsulLease
	cut atomic.Bool
}

func (c *cutLease) Watch(ctx context.Context, observe func(Observation, error)) {
	c.ConsulLease.Watch(ctx, func(o Observation, err error) {
		if c.cut.Load() {
			observe(Observation{}, errors.New("cut"))
			return
		}
		observe(o, err)
	})
}

func (c *cutLease) Write(ctx context.Context, w Write) WriteResult {
	if c.cut.Load() {
		return WriteResult{Write: w, Err: errors.New("cut")}
	}
	return c.ConsulLease.Write(ctx, w)
}

// cutTransport drops every heartbeat sent or received while cut.
type cutTransport struct {
	*Memberlist
	cut  atomic.Bool
	recv chan Heartbeat
}

func (c *cutTransport) Send(hb Heartbeat) error {
	if c.cut.Load() {
		return nil
	}
	return c.Memberlist.Send(hb)
}

func (c *cutTransport) Received() <-chan Heartbeat { return c.recv }

type director struct {
	name  string
	stop  context.CancelFunc // stops this director alone, as SIGTERM does
	done  chan struct{}      // closed when its Run has returned
	r     *Runner
	lease *cutLease
	hb    *cutTransport
	roles *fakeRoles
}

func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap := netip.MustParseAddrPort(tl.Addr().String())
		ul, err := net.ListenPacket("udp", ap.String())
		tl.Close()
		if err == nil {
			ul.Close()
			return ap
		}
	}
	t.Fatal("no free port for tcp and udp")
	return netip.AddrPort{}
}

// startPair runs two directors on one agent, with the default timings
// or tm's.
func startPair(t *testing.T, key string, tm ...Timings) (*world, [2]*director) {
	agent := testconsul.Start(t)
	w := &world{active: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var ds [2]*director
	for i, name := range []string{"a", "b"} {
		log := hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Info})
		lease := &cutLease{ConsulLease: NewConsulLease(agent.Client, key, log.Named("lease"))}
		secret, err := lease.HeartbeatKey()
		if err != nil {
			t.Fatal(err)
		}
		addr := freePort(t)
		ml, err := NewMemberlist(name, addr, secret, log.Named("heartbeat"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ml.Close() })
		hb := &cutTransport{Memberlist: ml, recv: make(chan Heartbeat, 64)}
		go func() {
			for m := range ml.Received() {
				if !hb.cut.Load() {
					hb.recv <- m
				}
			}
		}()
		if err := lease.Register(name, addr); err != nil {
			t.Fatal(err)
		}
		go lease.Peers(ctx, name, ml.SetPeers)
		roles := &fakeRoles{w: w, name: name}
		opts := Options{Name: name, Lease: lease, Transport: hb, Roles: roles,
			Carrier: func() (bool, error) { return true, nil }, Logger: log}
		if len(tm) > 0 {
			opts.Timings = tm[0]
		}
		r, err := NewRunner(opts)
		if err != nil {
			t.Fatal(err)
		}
		dctx, stop := context.WithCancel(ctx)
		ds[i] = &director{name: name, stop: stop, done: make(chan struct{}), r: r, lease: lease, hb: hb, roles: roles}
		wg.Add(1)
		go func() { defer wg.Done(); defer close(ds[i].done); _ = r.Run(dctx) }()
	}
	return w, ds
}

// settled waits for one active and returns (active, standby).
func settled(t *testing.T, ds [2]*director) (*director, *director) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		a, b := ds[0].r.State(), ds[1].r.State()
		// The standby must hear the active (it guards it) before faults.
		switch {
		case a.Role == "active" && b.PeerRole == "active":
			return ds[0], ds[1]
		case b.Role == "active" && a.PeerRole == "active":
			return ds[1], ds[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the pair did not settle within 5s")
	return nil, nil
}

func (w *world) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.overlap != "" {
		t.Fatalf("two actives: %s; changes %q", w.overlap, w.changes)
	}
}

func TestPairTakeoverWhenActiveIsCutOff(t *testing.T) {
	w, ds := startPair(t, "lvs-sync/ha/test-takeover")
	active, standby := settled(t, ds)
	time.Sleep(300 * time.Millisecond) // a few renewals and guards
	cut := time.Now()
	active.hb.cut.Store(true)
	active.lease.cut.Store(true)

	var lost time.Duration
	for time.Since(cut) < time.Second && lost == 0 {
		standby.r.mu.Lock()
		if !standby.r.m.peerActive(standby.r.opts.Clock.Now()) {
			lost = time.Since(cut)
		}
		standby.r.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
	if !standby.r.WaitRole(Active, 2*time.Second) {
		t.Fatalf("standby did not take over; states %+v %+v", active.r.State(), standby.r.State())
	}
	took := time.Since(cut)
	if active.r.State().Role != "standby" {
		t.Fatal("the cut-off active is still active")
	}
	w.check(t)
	if took > time.Second {
		t.Fatalf("takeover took %s, want under 1s", took)
	}
	t.Logf("heartbeat loss detected after %s; standby active %s after the cut", lost, took)
}

func TestPairNoTakeoverWhenOnlyHeartbeatIsCut(t *testing.T) {
	w, ds := startPair(t, "lvs-sync/ha/test-heartbeat-cut")
	active, standby := settled(t, ds)
	epoch := active.r.State().Epoch
	active.hb.cut.Store(true)
	standby.hb.cut.Store(true)
	if standby.r.WaitRole(Active, 3*time.Second) {
		t.Fatalf("standby took over with only the heartbeat cut: %+v", standby.r.State())
	}
	if st := active.r.State(); st.Role != "active" || st.Epoch != epoch {
		t.Fatalf("active now %s epoch %d, was epoch %d", st.Role, st.Epoch, epoch)
	}
	w.check(t)
}

func TestPairHandover(t *testing.T) {
	w, ds := startPair(t, "lvs-sync/ha/test-handover")
	active, standby := settled(t, ds)
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := active.r.Handover(); err != nil {
		t.Fatal(err)
	}
	if !standby.r.WaitRole(Active, time.Second) {
		t.Fatalf("peer not active after the handover: %+v", standby.r.State())
	}
	took := time.Since(start)
	w.check(t)
	if took > 200*time.Millisecond {
		t.Fatalf("handover took %s", took)
	}
	if err := standby.r.Handover(); err != nil {
		// Right after, the old active may not guard yet: give it a beat.
		time.Sleep(200 * time.Millisecond)
		if err := standby.r.Handover(); err != nil {
			t.Fatalf("handing back: %v", err)
		}
	}
	if !active.r.WaitRole(Active, time.Second) {
		t.Fatal("handing back did not make the first active again")
	}
	w.check(t)
	if err := standby.r.Handover(); !errors.Is(err, ErrNotActive) {
		t.Fatalf("handover on a standby: %v", err)
	}
	t.Logf("handover: peer active %s after the call", took)
}
