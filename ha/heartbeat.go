package ha

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Memberlist carries the heartbeat between the two directors over
// hashicorp/memberlist, bound to the interface's address: membership and
// a UDP transport. The heartbeat itself is a best-effort user message
// every Timings.Heartbeat, not memberlist's failure detection, whose
// probe and suspicion timeouts cannot reliably tell a lost peer within
// 250ms; memberlist's own probing is slowed down to stay out of its way.
type Memberlist struct {
	ml   *memberlist.Memberlist
	log  hclog.Logger
	recv chan Heartbeat

	mu    sync.Mutex
	peers []Peer
	// joined is the peer memberlist was last asked to join, and when.
	joined   Peer
	joinedAt time.Time
}

var _ Transport = (*Memberlist)(nil)

// NewMemberlist listens on bind as the member called name.
func NewMemberlist(name string, bind netip.AddrPort, log hclog.Logger) (*Memberlist, error) {
	h := &Memberlist{log: log, recv: make(chan Heartbeat, 64)}
	conf := memberlist.DefaultLANConfig()
	conf.Name = name
	conf.BindAddr, conf.BindPort = bind.Addr().String(), int(bind.Port())
	conf.AdvertiseAddr, conf.AdvertisePort = conf.BindAddr, conf.BindPort
	conf.ProbeInterval, conf.ProbeTimeout = time.Second, 500*time.Millisecond
	conf.GossipInterval, conf.SuspicionMult = 200*time.Millisecond, 3
	conf.PushPullInterval = 30 * time.Second
	conf.Delegate = delegate{h}
	conf.LogOutput = nil
	conf.Logger = log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true, ForceLevel: hclog.Debug})
	ml, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("starting the heartbeat on %s: %w", bind, err)
	}
	h.ml = ml
	return h, nil
}

// SetPeers tells the transport where the peer is (from Consul).
func (h *Memberlist) SetPeers(peers []Peer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peers = peers
}

// Send sends hb to every peer, best effort: to its member if memberlist
// has it alive, else to its registered address (and asks memberlist to
// join it, at most once a second).
func (h *Memberlist) Send(hb Heartbeat) error {
	b, err := json.Marshal(hb)
	if err != nil {
		return err
	}
	h.mu.Lock()
	peers := h.peers
	h.mu.Unlock()
	if len(peers) == 0 {
		return errNoPeer
	}
	alive := map[string]*memberlist.Node{}
	for _, n := range h.ml.Members() {
		alive[n.Name] = n
	}
	var firstErr error
	for _, p := range peers {
		if n, ok := alive[p.Name]; ok {
			err = h.ml.SendBestEffort(n, b)
		} else {
			err = h.ml.SendToAddress(memberlist.Address{Addr: p.Addr.String(), Name: p.Name}, b)
			h.join(p)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("sending a heartbeat to %s at %s: %w", p.Name, p.Addr, err)
		}
	}
	return firstErr
}

func (h *Memberlist) join(p Peer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.joined == p && time.Since(h.joinedAt) < time.Second {
		return
	}
	h.joined, h.joinedAt = p, time.Now()
	go func() {
		if _, err := h.ml.Join([]string{p.Name + "/" + p.Addr.String()}); err != nil {
			h.log.Debug("cannot join the peer", "peer", p.Name, "address", p.Addr, "error", err)
		}
	}()
}

// Received delivers the heartbeats heard.
func (h *Memberlist) Received() <-chan Heartbeat { return h.recv }

// Close leaves and stops.
func (h *Memberlist) Close() error {
	_ = h.ml.Leave(100 * time.Millisecond)
	return h.ml.Shutdown()
}

// delegate receives memberlist's user messages.
type delegate struct{ h *Memberlist }

func (d delegate) NotifyMsg(b []byte) {
	var hb Heartbeat
	if err := json.Unmarshal(b, &hb); err != nil {
		return
	}
	select {
	case d.h.recv <- hb:
	default: // the loop is behind: a newer one follows within 50ms
	}
}
func (delegate) NodeMeta(int) []byte             { return nil }
func (delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (delegate) LocalState(bool) []byte          { return nil }
func (delegate) MergeRemoteState([]byte, bool)   {}

// InterfaceAddr is the first address of the link that is not a host
// address (not a VIP): IPv4 first, else IPv6 global unicast.
func InterfaceAddr(link string) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(link)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("finding interface %s: %w", link, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listing addresses of %s: %w", link, err)
	}
	var v6 netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ones, bits := n.Mask.Size()
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || ones == bits {
			continue
		}
		ip = ip.Unmap()
		switch {
		case ip.Is4():
			return ip, nil
		case ip.IsGlobalUnicast() && !v6.IsValid():
			v6 = ip
		}
	}
	if v6.IsValid() {
		return v6, nil
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no address for the heartbeat (VIPs, /32 and /128, do not count)", link)
}

var _ io.Closer = (*Memberlist)(nil)
