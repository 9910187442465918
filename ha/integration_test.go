package ha

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
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

// Drained ends the drain: only the VIPs (StepDown) count for overlaps.
func (f *fakeRoles) Drained() error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.changes = append(f.w.changes, f.name+" drained")
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
	addr  netip.AddrPort
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

// syncBuffer is a log output the test reads while directors write it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pairOptions vary startDirectors; the zero value is startPair's.
type pairOptions struct {
	// clients are each director's Consul client (default: the agent's).
	clients []*api.Client
	// names default to "a" and "b".
	names []string
	// log, when set, gets every director's log too.
	log io.Writer
	// token, when set, is the token holder of every director.
	token func() string
	// timings, when set, are every director's (default DefaultTimings).
	timings Timings
}

// startPair runs two directors on one agent, with the default timings
// or tm's.
func startPair(t *testing.T, key string, tm ...Timings) (*world, [2]*director) {
	agent := testconsul.Start(t)
	var o pairOptions
	if len(tm) > 0 {
		o.timings = tm[0]
	}
	w, ds := startDirectors(t, agent, key, o)
	return w, [2]*director{ds[0], ds[1]}
}

// startDirectors runs directors of the pair at key on agent, as run wires
// them: the heartbeat key from Consul, registered, peers followed.
func startDirectors(t *testing.T, agent *testconsul.Agent, key string, o pairOptions) (*world, []*director) {
	t.Helper()
	if o.names == nil {
		o.names = []string{"a", "b"}
	}
	w := &world{active: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var ds []*director
	for i, name := range o.names {
		client := agent.Client
		if i < len(o.clients) {
			client = o.clients[i]
		}
		var out io.Writer = os.Stderr
		if o.log != nil {
			out = io.MultiWriter(os.Stderr, o.log)
		}
		log := hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Info, Output: out})
		lease := &cutLease{ConsulLease: NewConsulLease(client, key, log.Named("lease"))}
		lease.Token = o.token
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
		r, err := NewRunner(Options{Name: name, Lease: lease, Transport: hb, Roles: roles,
			Carrier: func() (bool, error) { return true, nil }, Timings: o.timings, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		dctx, stop := context.WithCancel(ctx)
		d := &director{name: name, addr: addr, stop: stop, done: make(chan struct{}), r: r, lease: lease, hb: hb, roles: roles}
		ds = append(ds, d)
		wg.Add(1)
		go func() { defer wg.Done(); defer close(d.done); _ = r.Run(dctx) }()
	}
	return w, ds
}

// waitFor waits for cond, checking every 5ms, for at most d.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// guarded is whether d is active and holds a guard from its peer.
func (d *director) guarded() bool {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	return d.r.m.role == Active && d.r.opts.Clock.Now().Before(d.r.m.confirmed)
}

// settled waits for one active, guarded by the other, and returns
// (active, standby).
func settled(t *testing.T, ds [2]*director) (*director, *director) {
	t.Helper()
	var a, s *director
	if !waitFor(10*time.Second, func() bool {
		switch {
		case ds[0].guarded():
			a, s = ds[0], ds[1]
		case ds[1].guarded():
			a, s = ds[1], ds[0]
		default:
			return false
		}
		return true
	}) {
		t.Fatalf("the pair did not settle within 10s: %+v %+v", ds[0].r.State(), ds[1].r.State())
	}
	return a, s
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
	// The design's figure is about the TTL (600ms); the bound is
	// generous, for a loaded host.
	if !standby.r.WaitRole(Active, 5*time.Second) {
		t.Fatalf("standby did not take over; states %+v %+v", active.r.State(), standby.r.State())
	}
	took := time.Since(cut)
	if active.r.State().Role != "standby" {
		t.Fatal("the cut-off active is still active")
	}
	w.check(t)
	// The standby counts the TTL from the last renewal it saw, up to a
	// renewal before the cut.
	if tm := DefaultTimings(); took < tm.TTL-tm.Renew {
		t.Fatalf("takeover %s after the cut, before the lease's ttl %s less a renewal", took, tm.TTL)
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
	start := time.Now()
	if err := active.r.Handover(); err != nil {
		t.Fatal(err)
	}
	// Two Consul writes and a watch: tens of milliseconds; the bound is
	// generous, for a loaded host.
	if !standby.r.WaitRole(Active, 3*time.Second) {
		t.Fatalf("peer not active after the handover: %+v", standby.r.State())
	}
	took := time.Since(start)
	w.check(t)
	// Handing back needs the old active to guard the new one first.
	if !waitFor(5*time.Second, standby.guarded) {
		t.Fatalf("the old active does not guard the new one: %+v", active.r.State())
	}
	if err := standby.r.Handover(); err != nil {
		t.Fatalf("handing back: %v", err)
	}
	if !active.r.WaitRole(Active, 3*time.Second) {
		t.Fatal("handing back did not make the first active again")
	}
	w.check(t)
	if err := standby.r.Handover(); !errors.Is(err, ErrNotActive) {
		t.Fatalf("handover on a standby: %v", err)
	}
	t.Logf("handover: peer active %s after the call", took)
}

// leaseNow is lock_key as Consul has it now.
func leaseNow(t *testing.T, c *api.Client, key string) (Lease, uint64) {
	t.Helper()
	kv, _, err := c.KV().Get(key, nil)
	if err != nil || kv == nil {
		return Lease{}, 0
	}
	var l Lease
	_ = json.Unmarshal(kv.Value, &l)
	return l, kv.ModifyIndex
}

// TestPairSnapshotRestore: `consul snapshot save`, renewals, `consul
// snapshot restore` (the API the CLI calls): the key's index goes back.
// Within 2 × lease_ttl a director holds the lease again and renews it.
func TestPairSnapshotRestore(t *testing.T) {
	agent := testconsul.Start(t)
	const key = "lvs-sync/ha/test-restore"
	w, dl := startDirectors(t, agent, key, pairOptions{})
	settled(t, [2]*director{dl[0], dl[1]})
	rc, _, err := agent.Client.Snapshot().Save(nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, saved := leaseNow(t, agent.Client, key)
	if !waitFor(10*time.Second, func() bool { _, i := leaseNow(t, agent.Client, key); return i > saved+10 }) {
		t.Fatal("no renewals after the snapshot")
	}
	if err := agent.Client.Snapshot().Restore(nil, bytes.NewReader(snap)); err != nil {
		t.Fatalf("restoring the snapshot: %v", err)
	}
	restored := time.Now()
	if _, i := leaseNow(t, agent.Client, key); i > saved+5 {
		t.Logf("index %d right after the restore, %d when saved", i, saved)
	}
	within := 2 * DefaultTimings().TTL
	var holder string
	ok := waitFor(within+2*time.Second, func() bool {
		l, _ := leaseNow(t, agent.Client, key)
		if l.Holder == "" || !l.Renewed.After(restored) {
			return false
		}
		for _, d := range dl {
			if d.name == l.Holder && d.r.State().Role == "active" {
				holder = d.name
				return true
			}
		}
		return false
	})
	took := time.Since(restored)
	l, _ := leaseNow(t, agent.Client, key)
	if !ok {
		t.Fatalf("no director holds and renews the lease %s after the restore: lease %+v; %+v; %+v", took.Round(time.Millisecond), l, dl[0].r.State(), dl[1].r.State())
	}
	if took > within {
		t.Logf("an active renews %s after the restore, over 2 × lease_ttl (%s): a loaded host?", took, within)
	}
	w.check(t)
	t.Logf("%s holds and renews the lease %s after the restore", holder, took.Round(time.Millisecond))
}

// TestPairACLRefusal: a token that may read lock_key but not write it.
// The director is never active, says why once at WARN and in its status;
// the policy fixed, it becomes active and says so.
func TestPairACLRefusal(t *testing.T) {
	agent := testconsul.StartWithACLs(t)
	const key = "lvs-sync/ha/test-acl"
	rules := func(lease string) string {
		return `key "` + key + `" { policy = "` + lease + `" }
key_prefix "` + key + `/" { policy = "write" }
service "lvs-sync-ha" { policy = "write" }
service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`
	}
	secret, policy := agent.Token(t, "director", rules("read"))
	conf := api.DefaultConfig()
	conf.Address, conf.Token, conf.TokenFile = agent.HTTPAddr, secret, ""
	client, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	_, ds := startDirectors(t, agent, key, pairOptions{clients: []*api.Client{client}, names: []string{"a"}, log: &logs})
	d := ds[0]
	warned := func() bool { return strings.Contains(logs.String(), "refuses the lease write") }
	if !waitFor(5*time.Second, warned) {
		t.Fatalf("no WARN about the refused lease write; log:\n%s", logs.String())
	}
	time.Sleep(time.Second) // many writes refused: still one WARN
	if n := strings.Count(logs.String(), "refuses the lease write"); n != 1 {
		t.Fatalf("the refusal logged %d times, want once", n)
	}
	line := logs.String()[strings.Index(logs.String(), "refuses the lease write"):]
	line = line[:strings.IndexByte(line, '\n')]
	if !strings.Contains(line, "key="+key) || !strings.Contains(line, "missing=key:write") || !strings.Contains(logs.String(), "[WARN]  a.lease: consul refuses") {
		t.Fatalf("the WARN does not name the key and the permission: %s", line)
	}
	st := d.r.State()
	if st.Role != "standby" || !strings.Contains(st.LeaseError, key) || !strings.Contains(st.LeaseError, "key:write") {
		t.Fatalf("status with writes refused: role %s, lease error %q", st.Role, st.LeaseError)
	}
	agent.SetRules(t, policy, "director", rules("write"))
	if !d.r.WaitRole(Active, 10*time.Second) {
		t.Fatalf("the policy fixed, not active: %+v", d.r.State())
	}
	if st := d.r.State(); st.LeaseError != "" {
		t.Fatalf("active, and the status still says %q", st.LeaseError)
	}
	if !strings.Contains(logs.String(), "lease writable again") {
		t.Fatal("the end of the refusal is not logged")
	}
}

// forge sends, from loopback, a heartbeat in the wire format of a
// memberlist user message without a key (the message type, 8, and the
// JSON heartbeat), as anyone on the link can.
func forge(t *testing.T, to netip.AddrPort, hb Heartbeat) {
	t.Helper()
	b, _ := json.Marshal(hb)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(append([]byte{8}, b...)); err != nil {
		t.Fatal(err)
	}
}

// TestPairForgedHeartbeats: datagrams in today's wire format claiming the
// standby is active at a higher epoch, sent to the active every 200ms
// for 5s, and claiming the active is, to the standby, change no role;
// and the active cut off while they go on, the standby still takes over.
func TestPairForgedHeartbeats(t *testing.T) {
	w, ds := startPair(t, "lvs-sync/ha/test-forged")
	active, standby := settled(t, ds)
	epoch := active.r.State().Epoch
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		forge(t, active.addr, Heartbeat{From: standby.name, Incarnation: 1, Role: Active, Epoch: epoch + 100})
		forge(t, standby.addr, Heartbeat{From: active.name, Incarnation: 1, Role: Active, Epoch: epoch + 100})
		if st := active.r.State(); st.Role != "active" || st.Epoch != epoch {
			t.Fatalf("a forged heartbeat moved the active: %s epoch %d (was %d), last step-down %q", st.Role, st.Epoch, epoch, st.LastStepDown)
		}
		if st := standby.r.State(); st.Role != "standby" {
			t.Fatalf("the standby is %s", st.Role)
		}
	}
	w.check(t)
	// Forged beats go on, to the standby, claiming the active is there.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				forge(t, standby.addr, Heartbeat{From: active.name, Incarnation: 1, Role: Active, Epoch: epoch + 100})
			}
		}
	}()
	defer func() { close(stop); <-done }()
	active.hb.cut.Store(true)
	active.lease.cut.Store(true)
	if !standby.r.WaitRole(Active, 5*time.Second) {
		t.Fatalf("forged heartbeats pin the standby: %+v", standby.r.State())
	}
	w.check(t)
}

// TestPairSameName: two directors without ha { name } on one agent both
// default to its node name. The second is refused at start, naming both
// addresses and ha { name }.
func TestPairSameName(t *testing.T) {
	agent := testconsul.Start(t)
	const key = "lvs-sync/ha/test-same-name"
	name, err := agent.Client.Agent().NodeName()
	if err != nil {
		t.Fatal(err)
	}
	first, second := freePort(t), freePort(t)
	log := hclog.NewNullLogger()
	if err := NewConsulLease(agent.Client, key, log).Register(name, first); err != nil {
		t.Fatal(err)
	}
	err = NewConsulLease(agent.Client, key, log).Register(name, second)
	if err == nil {
		t.Fatalf("a second director named %q at %s registered beside the first at %s", name, second, first)
	}
	for _, want := range []string{first.String(), second.String(), "ha { name }", name} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("the refusal does not name %q: %v", want, err)
		}
	}
	// The same director again (a restart) is no second director.
	if err := NewConsulLease(agent.Client, key, log).Register(name, first); err != nil {
		t.Fatalf("re-registering the first: %v", err)
	}
}

// TestPairTokenRotation: the pair's calls carry the token holder's token
// as it is at each call. Rotated (as a reload does) and the old token
// revoked, the pair still renews; with the heartbeat then cut for 1s
// (so that the active must renew to stay), an active remains.
func TestPairTokenRotation(t *testing.T) {
	agent := testconsul.StartWithACLs(t)
	const key = "lvs-sync/ha/test-rotate"
	rules := `key_prefix "` + key + `" { policy = "write" }
service "lvs-sync-ha" { policy = "write" }
service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`
	oldTok, _ := agent.Token(t, "director-old", rules)
	newTok, _ := agent.Token(t, "director-new", rules)
	var current atomic.Value
	current.Store(oldTok)
	conf := api.DefaultConfig()
	conf.Address, conf.Token, conf.TokenFile = agent.HTTPAddr, oldTok, ""
	client, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	w, dl := startDirectors(t, agent, key, pairOptions{clients: []*api.Client{client, client},
		token: func() string { return current.Load().(string) }})
	ds := [2]*director{dl[0], dl[1]}
	active, _ := settled(t, ds)
	epoch := active.r.State().Epoch
	current.Store(newTok)
	self, _, err := agent.Client.ACL().TokenReadSelf(&api.QueryOptions{Token: oldTok})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Client.ACL().TokenDelete(self.AccessorID, nil); err != nil {
		t.Fatal(err)
	}
	_, from := leaseNow(t, agent.Client, key)
	if !waitFor(5*time.Second, func() bool { _, i := leaseNow(t, agent.Client, key); return i > from+10 }) {
		t.Fatalf("no renewals with the old token revoked: %+v", active.r.State())
	}
	for _, d := range ds {
		d.hb.cut.Store(true)
	}
	time.Sleep(time.Second) // the heartbeat cut for 1s: the active must renew to stay
	for _, d := range ds {
		d.hb.cut.Store(false)
	}
	if st := active.r.State(); st.Role != "active" || st.Epoch != epoch {
		t.Fatalf("with the token rotated and the heartbeat cut, the active is %s at epoch %d (was %d): %q", st.Role, st.Epoch, epoch, st.LastStepDown)
	}
	w.check(t)
}

// TestPairHandoverToUnreadyStandby: a standby whose daemon has applied no
// sync yet says so in its heartbeat; the active refuses to hand over to
// it, naming the reason, and hands over once it is ready.
func TestPairHandoverToUnreadyStandby(t *testing.T) {
	w, ds := startPair(t, "lvs-sync/ha/test-unready")
	active, standby := settled(t, ds)
	var ready atomic.Bool
	standby.r.SetReady(func() (bool, string) {
		if ready.Load() {
			return true, "synced"
		}
		return false, "no sync applied yet"
	})
	if !waitFor(5*time.Second, func() bool { return active.r.State().PeerUnready != "" }) {
		t.Fatalf("the active does not hear that its peer is unready: %+v", active.r.State())
	}
	err := active.r.Handover()
	if err == nil || !strings.Contains(err.Error(), "no sync applied yet") {
		t.Fatalf("handover to an unready standby: %v", err)
	}
	if st := active.r.State(); st.Role != "active" {
		t.Fatalf("a refused handover left the active %s", st.Role)
	}
	ready.Store(true)
	if !waitFor(5*time.Second, func() bool { return active.r.State().PeerUnready == "" && active.guarded() }) {
		t.Fatalf("the peer's readiness does not reach the active: %+v", active.r.State())
	}
	if err := active.r.Handover(); err != nil {
		t.Fatalf("handover once ready: %v", err)
	}
	if !standby.r.WaitRole(Active, 3*time.Second) {
		t.Fatalf("the ready standby did not take the handover: %+v", standby.r.State())
	}
	w.check(t)
}
