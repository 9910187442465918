package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// fakeSpeaker is the speaker of the daemon's tests: the set it announces,
// and every call with when it came.
type fakeSpeaker struct {
	mu    sync.Mutex
	set   []netip.Prefix
	calls []speakerCall
	fail  error
}

type speakerCall struct {
	at       time.Time
	prefixes []netip.Prefix
}

func (s *fakeSpeaker) Announce(prefixes []netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, speakerCall{time.Now(), slices.Clone(prefixes)})
	if s.fail != nil {
		return s.fail
	}
	s.set = slices.Clone(prefixes)
	return nil
}

func (s *fakeSpeaker) State() status.Speaker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return status.Speaker{Announced: slices.Clone(s.set), Neighbors: []status.SpeakerNeighbor{{
		Address: netip.MustParseAddr("10.7.0.1"), ASN: 65000, State: "established", Since: time.Now().Add(-time.Minute), Announced: len(s.set)}}}
}

func (s *fakeSpeaker) announced() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.set {
		out = append(out, p.String())
	}
	return out
}

func (s *fakeSpeaker) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func (s *fakeSpeaker) lastCall() speakerCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[len(s.calls)-1]
}

const bgpConfig = `
api {
  consul_unreachable_after = "1s"
}
director {
  reconcile_interval = "1s"
  bgp {
    asn            = 65010
    shutdown_delay = "300ms"
    neighbor "10.7.0.1" {
      asn = 65000
    }
  }
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  scheduler  = "mh"
  scheduler_flags = ["mh-fallback"]
}
virtual_service "lonely" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
  scheduler  = "mh"
  scheduler_flags = ["mh-fallback"]
  service    = "lonely"
}
virtual_service "paged" {
  address    = "10.10.10.62:80"
  forwarding = "gate"
  scheduler  = "mh"
  scheduler_flags = ["mh-fallback"]
  service    = "lonely"
  fallback   = "10.9.9.9:80"
}
`

// TestDaemonAnnouncesWhatItServes runs the daemon against a real Consul
// agent with a fake speaker: nothing is announced before the first sync
// is applied (here the kernel refuses it), every VIP that can serve
// after it (a fallback counts; an empty pool without one does not); a
// Consul outage changes nothing; and on stop every VIP is withdrawn,
// shutdown_delay before the daemon returns.
func TestDaemonAnnouncesWhatItServes(t *testing.T) {
	agent := testconsul.Start(t)
	register(t, agent)
	kernel := ipvstest.New(ipvs.State{})
	kernel.FailAfter(0, errors.New("the kernel refuses"), nil)
	speaker := &fakeSpeaker{}
	r := start(t, Options{Config: mustConfig(t, bgpConfig), Source: source(agent.Client), Kernel: kernel, Speaker: speaker})
	vipsOf := func() map[string]string {
		out := map[string]string{}
		for _, v := range r.d.BGP().VIPs {
			out[v.Address] = v.Reason
		}
		return out
	}

	// The catalog answered, the kernel refused: not synced, nothing
	// announced, and status says why.
	waitFor(t, "a failed first sync", 10*time.Second, func() bool {
		return slices.ContainsFunc(r.all(), func(rep Report) bool { return rep.Err != nil })
	})
	if got := speaker.announced(); len(got) != 0 {
		t.Fatalf("announced %v before the first sync was applied", got)
	}
	if got, want := vipsOf(), map[string]string{"10.10.10.60": "not synced yet", "10.10.10.61": "not synced yet", "10.10.10.62": "not synced yet"}; !maps.Equal(got, want) {
		t.Errorf("before the first sync: %v, want %v", got, want)
	}

	kernel.FailAfter(0, nil, nil)
	want := []string{"10.10.10.60/32", "10.10.10.62/32"}
	took := waitFor(t, "the VIPs announced after the first sync", 10*time.Second, func() bool { return slices.Equal(speaker.announced(), want) })
	t.Logf("announced %v after the kernel took the retry: %v", want, took)
	if got, want := vipsOf(), map[string]string{"10.10.10.60": "", "10.10.10.61": "pool empty", "10.10.10.62": ""}; !maps.Equal(got, want) {
		t.Errorf("after the first sync: %v, want %v", got, want)
	}
	calls := speaker.callCount()

	// Consul goes away: /v1/health turns unhealthy, reconciles go on, and
	// the routes stay exactly as they are.
	agent.Stop()
	stopped := time.Now()
	waitFor(t, "health to see consul unreachable", 15*time.Second, func() bool {
		ok, why := r.d.Health()
		return !ok && strings.Contains(why, "consul unreachable")
	})
	waitFor(t, "a reconcile during the outage", 10*time.Second, func() bool {
		return slices.ContainsFunc(r.all(), func(rep Report) bool { return rep.At.After(stopped) && rep.Trigger == TriggerReconcile })
	})
	if got := speaker.announced(); !slices.Equal(got, want) || speaker.callCount() != calls {
		t.Errorf("during the outage: announced %v after %d speaker calls; want %v unchanged, no call since %d", got, speaker.callCount(), want, calls)
	}

	// The status view, as /v1/status serves it.
	v, err := r.d.Status()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v.BGP)
	for _, s := range []string{`"announced":["10.10.10.60/32","10.10.10.62/32"]`, `"address":"10.7.0.1","asn":65000,"state":"established"`,
		`"address":"10.10.10.61","announced":false,"reason":"pool empty"`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("status bgp %s\nwant it to contain %s", b, s)
		}
	}

	// Stop: withdrawn first, and the daemon returns shutdown_delay later.
	r.cancel()
	var returned time.Time
	select {
	case err := <-r.done:
		returned = time.Now()
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop")
	}
	last := speaker.lastCall()
	if len(last.prefixes) != 0 || len(speaker.announced()) != 0 {
		t.Fatalf("on stop the speaker was last told %v, announces %v; want everything withdrawn", last.prefixes, speaker.announced())
	}
	if gap := returned.Sub(last.at); gap < 300*time.Millisecond {
		t.Errorf("the daemon returned %v after the withdrawal, want at least shutdown_delay (300ms)", gap)
	} else {
		t.Logf("withdrawn, then returned %v later (shutdown_delay 300ms)", gap)
	}
	for _, v := range r.d.BGP().VIPs {
		if v.Announced || v.Reason != "stopping" {
			t.Errorf("after stop %s announced=%v reason %q, want stopping", v.Address, v.Announced, v.Reason)
		}
	}
}

// TestLoopRetriesARefusedAnnouncement: an announcement the speaker
// refuses is tried again a second later, by a timer sync, not at the
// next reconcile a minute away.
func TestLoopRetriesARefusedAnnouncement(t *testing.T) {
	h := newHarness(t, bgpConfig, ipvstest.New(ipvs.State{}))
	speaker := &fakeSpeaker{fail: errors.New("speaker not started")}
	h.d.opts.Speaker = speaker
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	if len(h.reports) != 1 || h.reports[0].Err != nil || len(speaker.announced()) != 0 {
		t.Fatalf("first sync: %+v, announced %v", h.reports, speaker.announced())
	}
	if due := h.due(TriggerTimer); !due.Equal(h.clock.Now().Add(announceRetry)) {
		t.Fatalf("the retry is due at %v, want %v after the refusal", due.Sub(h.clock.Now()), announceRetry)
	}
	speaker.mu.Lock()
	speaker.fail = nil
	speaker.mu.Unlock()
	if tr := h.untilNext(); tr != TriggerTimer {
		t.Fatalf("%s fired, want the timer", tr)
	}
	if got, want := speaker.announced(), []string{"10.10.10.60/32", "10.10.10.62/32"}; !slices.Equal(got, want) {
		t.Errorf("after the retry: announced %v, want %v", got, want)
	}
	if due := h.due(TriggerTimer); !due.IsZero() {
		t.Errorf("a timer still due %v later", due.Sub(h.clock.Now()))
	}
}

// TestRunWithdrawsThenWaitsShutdownDelay drives Run on a fake clock: once
// its context ends it withdraws every VIP at once, and returns only when
// shutdown_delay has passed on its clock, not before.
func TestRunWithdrawsThenWaitsShutdownDelay(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	src := chanSource{snaps: make(chan catalog.Snapshot, 1)}
	speaker := &fakeSpeaker{}
	d, err := New(Options{Config: mustConfig(t, bgpConfig), Source: src, Kernel: ipvstest.New(ipvs.State{}), Clock: clock,
		Speaker: speaker, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	src.snaps <- catalog.Snapshot{Services: map[string]*catalog.Service{"web": {Name: "web", Instances: []*catalog.Instance{web1(catalog.Passing)}}}}
	want := []string{"10.10.10.60/32", "10.10.10.62/32"}
	waitFor(t, "announced after the first sync", 5*time.Second, func() bool {
		clock.Advance(10 * time.Millisecond) // the loop's coalescing, on its clock
		return slices.Equal(speaker.announced(), want)
	})

	cancel()
	waitFor(t, "withdrawn on stop", 5*time.Second, func() bool { return len(speaker.announced()) == 0 })
	// One waiter on the clock, the delay: the loop's timer is stopped by then.
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer bcancel()
	if err := clock.BlockUntilContext(bctx, 1); err != nil {
		t.Fatalf("Run is not waiting on its clock: %v", err)
	}
	clock.Advance(299 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("Run returned before shutdown_delay (300ms) passed on its clock")
	default:
	}
	clock.Advance(time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return once shutdown_delay passed")
	}
}
