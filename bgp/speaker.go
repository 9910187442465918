package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// ErrStopped is returned by Start and Announce once Stop was called: a
// speaker is used once.
var ErrStopped = errors.New("bgp speaker stopped")

// importPolicy is the one policy of the global RIB: accept the paths
// this speaker originates, reject (by the assignment's default) every
// path a neighbour sends.
const importPolicy = "lvs-sync-import-local-only"

// Speaker is an embedded GoBGP server that only announces: Announce
// sets the host routes it originates, which go to every neighbour of
// their address family with this director's address on the session as
// next hop. It imports nothing. Its methods are safe for concurrent use.
type Speaker struct {
	cfg Config
	log hclog.Logger
	srv *server.BgpServer

	// op serialises Start, Announce and Stop: each changes the RIB.
	op        sync.Mutex
	started   bool
	stopped   bool
	want      map[netip.Prefix]bool // the set of the last Announce
	inRIB     map[netip.Prefix]bool // what GoBGP originates now
	stopWatch context.CancelFunc

	// mu guards what Status reads apart from GoBGP.
	mu        sync.Mutex
	running   bool
	stopping  bool
	peers     map[netip.Addr]*peerState
	routerID  netip.Addr
	announced []netip.Prefix // inRIB, sorted
}

type peerState struct {
	state     string
	since     time.Time
	lastError string
	warned    string // the last error logged, so a repeated one is logged once
}

// Status is what Status reports: each neighbour, in the config's order,
// the prefixes announced, and the router ID.
type Status struct {
	Neighbors []NeighborStatus
	Announced []netip.Prefix
	// RouterID is the BGP identifier in use, zero before Start.
	RouterID netip.Addr
}

// NeighborStatus is one neighbour's session.
type NeighborStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is the session's FSM state, lowercase: "idle", "connect",
	// "active", "opensent", "openconfirm", "established", or "stopped"
	// after Stop.
	State string
	// Since is when State began: the session's uptime when established.
	Since time.Time
	// Announced counts the prefixes the neighbour is sent (those of its
	// address family), while established.
	Announced int
	// LastError says why the last session ended or failed to open (a
	// NOTIFICATION, hold timer expiry, a closed connection). A neighbour
	// that never answers the TCP connection (down, filtered, a wrong MD5
	// password) stays "active" with no error.
	LastError string
}

// New checks cfg and makes a speaker that does nothing until Start.
func New(cfg Config, log hclog.Logger) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bgp: %w", err)
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	cfg.Neighbors = slices.Clone(cfg.Neighbors)
	s := &Speaker{
		cfg:   cfg,
		log:   log,
		want:  map[netip.Prefix]bool{},
		inRIB: map[netip.Prefix]bool{},
		peers: map[netip.Addr]*peerState{},
	}
	now := time.Now()
	for _, n := range cfg.Neighbors {
		s.peers[n.Address.Unmap()] = &peerState{state: "idle", since: now}
	}
	return s, nil
}

// Start runs the BGP server, its import policy and its neighbours, and
// announces what Announce set before. ctx bounds the start only; the
// speaker runs until Stop. A failed Start stops what it started.
func (s *Speaker) Start(ctx context.Context) (err error) {
	s.op.Lock()
	defer s.op.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if s.started {
		return errors.New("bgp speaker already started")
	}
	rid, err := s.cfg.routerID()
	if err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	s.started = true
	// Made here, not in New: GoBGP's server starts goroutines (its BFD
	// loop) that only its Stop ends.
	s.srv = server.NewBgpServer(server.LoggerOption(newGobgpLogger(s.log.Named("gobgp")), nil))
	go s.srv.Serve()
	defer func() {
		if err != nil {
			s.stopped = true // a failed Start is final, as Stop is
			_ = s.shutdown(context.Background())
		}
	}()

	listen := s.cfg.ListenPort
	if listen == 0 {
		listen = -1 // GoBGP's "no listener"; its 0 means 179
	}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        s.cfg.ASN,
		RouterId:   rid.String(),
		ListenPort: listen,
	}}); err != nil {
		return fmt.Errorf("bgp: start asn %d router id %s: %w", s.cfg.ASN, rid, err)
	}
	s.mu.Lock()
	s.running, s.routerID = true, rid
	s.mu.Unlock()

	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{
		Name: importPolicy,
		Statements: []*api.Statement{{
			Name:       importPolicy + "-accept-local",
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
		}},
	}}); err != nil {
		return fmt.Errorf("bgp: import policy %s: %w", importPolicy, err)
	}
	if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Direction:     api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies:      []*api.Policy{{Name: importPolicy}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}}); err != nil {
		return fmt.Errorf("bgp: import policy %s on the global rib: %w", importPolicy, err)
	}

	wctx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	if err := s.srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: s.onPeer}, server.WatchPeer()); err != nil {
		return fmt.Errorf("bgp: watch the neighbours: %w", err)
	}

	for _, n := range s.cfg.Neighbors {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerOf(n)}); err != nil {
			return fmt.Errorf("bgp: neighbor %s asn %d: %w", n.Address, n.ASN, err)
		}
	}
	s.log.Info("bgp speaker started", "asn", s.cfg.ASN, "router_id", rid, "neighbors", len(s.cfg.Neighbors), "listen_port", s.cfg.ListenPort)
	return s.sync()
}

// peerOf is a neighbour as GoBGP configures it: one address family, the
// neighbour's own; the hold time and a keepalive at a third of it;
// connect retry every few seconds; MD5 when a password is set.
func peerOf(n Neighbor) *api.Peer {
	addr := n.Address.Unmap()
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if addr.Is6() {
		fam.Afi = api.Family_AFI_IP6
	}
	hold := uint64(n.holdTime() / time.Second)
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: addr.String(),
			PeerAsn:         n.ASN,
			AuthPassword:    n.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          hold,
			KeepaliveInterval: max(hold/3, 1),
			ConnectRetry:      uint64(defaultConnectRetry / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(n.port())},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}},
	}
	if n.LocalAddress.IsValid() {
		p.Transport.LocalAddress = n.LocalAddress.Unmap().String()
	}
	return p
}

// Announce makes the announced set exactly prefixes, each a host route
// (/32 or /128): those not yet announced are added, the rest withdrawn.
// It is idempotent. Before Start it only records the set, which Start
// announces. A prefix that is not a host route fails the call before
// anything changes.
func (s *Speaker) Announce(prefixes []netip.Prefix) error {
	want := make(map[netip.Prefix]bool, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() || p.Bits() != p.Addr().BitLen() {
			return fmt.Errorf("bgp: announce %s: not a host route (/32 or /128)", p)
		}
		want[p] = true
	}
	s.op.Lock()
	defer s.op.Unlock()
	if s.stopped {
		return ErrStopped
	}
	s.want = want
	if !s.started {
		return nil
	}
	return s.sync()
}

// sync brings GoBGP's originated paths to s.want. Called with s.op held.
func (s *Speaker) sync() error {
	var add, del []netip.Prefix
	for p := range s.want {
		if !s.inRIB[p] {
			add = append(add, p)
		}
	}
	for p := range s.inRIB {
		if !s.want[p] {
			del = append(del, p)
		}
	}
	slices.SortFunc(add, comparePrefix)
	slices.SortFunc(del, comparePrefix)
	level := hclog.Info
	if len(add)+len(del) > summariseAbove {
		level = hclog.Debug
	}
	var errs []error
	withdrawn, announced := 0, 0
	for _, p := range del {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{pathOf(p)}}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: withdraw %s: %w", p, err))
			continue
		}
		delete(s.inRIB, p)
		withdrawn++
		s.log.Log(level, "withdrew prefix", "prefix", p)
	}
	for _, p := range add {
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{pathOf(p)}}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: announce %s: %w", p, err))
			continue
		}
		s.inRIB[p] = true
		announced++
		s.log.Log(level, "announced prefix", "prefix", p)
	}
	if level == hclog.Debug {
		s.log.Info("announced and withdrew prefixes", "announced", announced, "withdrawn", withdrawn)
	}
	list := make([]netip.Prefix, 0, len(s.inRIB))
	for p := range s.inRIB {
		list = append(list, p)
	}
	slices.SortFunc(list, comparePrefix)
	s.mu.Lock()
	s.announced = list
	s.mu.Unlock()
	return errors.Join(errs...)
}

// summariseAbove is the most prefixes sync logs one by one at INFO; above
// it, one INFO line counts them (as ipvs.Apply does its changes).
const summariseAbove = 20

// pathOf is a host route originated here, origin IGP, with the
// unspecified next hop: GoBGP puts the session's local address in its
// place when it sends the path, to eBGP and iBGP neighbours alike (see
// the package doc).
func pathOf(p netip.Prefix) *apiutil.Path {
	nlri, _ := bgp.NewIPAddrPrefix(p)
	origin := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)
	if p.Addr().Is4() {
		nh, _ := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		return &apiutil.Path{Family: bgp.RF_IPv4_UC, Nlri: nlri, Attrs: []bgp.PathAttributeInterface{origin, nh}}
	}
	mp, _ := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
	return &apiutil.Path{Family: bgp.RF_IPv6_UC, Nlri: nlri, Attrs: []bgp.PathAttributeInterface{origin, mp}}
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// onPeer follows GoBGP's peer state events: the state and since of
// Status, and the log's one line per session up and down.
func (s *Speaker) onPeer(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	addr := ev.Peer.Conf.NeighborAddress.Unmap()
	state := fsmStateName(ev.Peer.State.SessionState)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[addr]
	// "stopped" is the end: an event GoBGP delivers after Stop closed the
	// sessions (the watch is cancelled only as shutdown returns) must not
	// bring a neighbour back to "idle".
	if p == nil || p.state == state || p.state == "stopped" {
		return
	}
	was := p.state
	p.state, p.since = state, at
	reason := ""
	if failure(ev.Peer.State.DisconnectReason) {
		reason = ev.Peer.State.DisconnectMessage
		p.lastError = reason
	}
	switch {
	case state == "established":
		p.warned = ""
		args := []any{"neighbor", addr, "asn", ev.Peer.State.PeerASN}
		if l := ev.Peer.Transport.LocalAddress; l.IsValid() && !l.IsUnspecified() {
			args = append(args, "local_address", l)
		}
		s.log.Info("bgp session established", args...)
	case s.stopping:
		if was == "established" {
			s.log.Info("bgp session closed", "neighbor", addr)
		}
	case was == "established":
		p.warned = reason
		s.log.Warn("bgp session down", "neighbor", addr, "reason", reason)
	case reason != "" && reason != p.warned:
		p.warned = reason
		s.log.Warn("bgp session not established", "neighbor", addr, "state", state, "reason", reason)
	default:
		s.log.Debug("bgp session state", "neighbor", addr, "from", was, "to", state)
	}
}

// failure tells the reasons a session ends on (or fails to open) from
// the FSM's ordinary steps (idle hold timer expired, OPEN received).
func failure(r api.PeerState_DisconnectReason) bool {
	switch r {
	case api.PeerState_DISCONNECT_REASON_HOLD_TIMER_EXPIRED,
		api.PeerState_DISCONNECT_REASON_NOTIFICATION_SENT,
		api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED,
		api.PeerState_DISCONNECT_REASON_READ_FAILED,
		api.PeerState_DISCONNECT_REASON_WRITE_FAILED,
		api.PeerState_DISCONNECT_REASON_INVALID_MSG,
		api.PeerState_DISCONNECT_REASON_BAD_PEER_AS:
		return true
	}
	return false
}

func fsmStateName(st bgp.FSMState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "BGP_FSM_"))
}

// Status reports each neighbour's session and the prefixes announced.
func (s *Speaker) Status() Status {
	counts := map[netip.Addr]int{}
	uptimes := map[netip.Addr]time.Time{}
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
			if err != nil {
				return
			}
			addr = addr.Unmap()
			for _, af := range p.GetAfiSafis() {
				counts[addr] += int(af.GetState().GetAdvertised())
			}
			if up := p.GetTimers().GetState().GetUptime(); up != nil && p.GetState().GetSessionState() == api.PeerState_SESSION_STATE_ESTABLISHED {
				uptimes[addr] = up.AsTime()
			}
		})
		cancel()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var st Status
	for _, n := range s.cfg.Neighbors {
		addr := n.Address.Unmap()
		p := s.peers[addr]
		ns := NeighborStatus{Address: addr, ASN: n.ASN, State: p.state, Since: p.since, LastError: p.lastError}
		if p.state == "established" {
			ns.Announced = counts[addr]
			if up, ok := uptimes[addr]; ok && up.After(ns.Since) {
				ns.Since = up
			}
		}
		st.Neighbors = append(st.Neighbors, ns)
	}
	st.Announced = slices.Clone(s.announced)
	st.RouterID = s.routerID
	return st
}

// Stop withdraws every prefix, waits (bounded by ctx) until each
// established neighbour has been sent the withdrawal, then closes the
// sessions with a CEASE and stops the server. It returns ctx's error if
// the wait or the close ran out of time; the sessions are closed anyway,
// which withdraws the routes on the router too.
func (s *Speaker) Stop(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	if !s.started {
		return nil
	}
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()

	before := s.sentUpdates()
	n := len(s.inRIB)
	s.want = map[netip.Prefix]bool{}
	err := s.sync()
	if waitErr := s.waitSent(ctx, before); waitErr != nil {
		err = errors.Join(err, waitErr)
	}
	if closeErr := s.shutdown(ctx); closeErr != nil {
		err = errors.Join(err, closeErr)
	}
	s.log.Info("bgp speaker stopped", "withdrawn", n)
	return err
}

// sent is how many UPDATEs an established neighbour was written, and how
// many prefixes it was being sent.
type sent struct{ updates, prefixes uint64 }

func (s *Speaker) sentUpdates() map[string]sent {
	m := map[string]sent{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED {
			return
		}
		var n uint64
		for _, af := range p.GetAfiSafis() {
			n += af.GetState().GetAdvertised()
		}
		m[p.GetConf().GetNeighborAddress()] = sent{updates: p.GetState().GetMessages().GetSent().GetUpdate(), prefixes: n}
	})
	return m
}

// waitSent waits until every neighbour of before that was sent prefixes
// has been written at least one more UPDATE, and its count of UPDATEs
// written has then held still for one poll (5 ms), or is no longer
// established. GoBGP packs the withdrawals queued for a neighbour into
// as few UPDATEs as fit and writes them back to back, so how many there
// are is not known in advance; a count that moved and then stopped is a
// batch written whole.
func (s *Speaker) waitSent(ctx context.Context, before map[string]sent) error {
	prev := map[string]uint64{}
	for {
		pending, waited := "", 0
		now := s.sentUpdates()
		for addr, b := range before {
			if b.prefixes == 0 {
				continue
			}
			waited++
			n, ok := now[addr]
			if ok && (n.updates <= b.updates || n.updates != prev[addr]) {
				pending = addr
			}
		}
		if pending == "" {
			s.log.Debug("withdrawal written to every neighbour", "neighbors", waited)
			return nil
		}
		for addr, n := range now {
			prev[addr] = n.updates
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bgp: withdrawal not confirmed sent to neighbor %s: %w", pending, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// shutdown closes every session (a CEASE each) and stops the server,
// waiting for it within ctx.
func (s *Speaker) shutdown(ctx context.Context) error {
	if s.stopWatch != nil {
		defer s.stopWatch()
	}
	done := make(chan struct{})
	go func() {
		s.srv.Stop()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("bgp: closing the sessions: %w", ctx.Err())
	}
	s.mu.Lock()
	s.running = false
	now := time.Now()
	for _, p := range s.peers {
		p.state, p.since = "stopped", now
	}
	s.mu.Unlock()
	return err
}
