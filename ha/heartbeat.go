package ha

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/netip"
	"slices"
	"strings"
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
//
// A heartbeat can depose an active or pin a standby, so it is taken only
// from the peer: every packet is encrypted and authenticated with the
// pair's key (memberlist's keyring, AES-GCM; a packet without it is
// dropped), a packet is read only from the peer's registered address and
// a stream only from its host, and a heartbeat only under the peer's
// registered name.
type Memberlist struct {
	ml   *memberlist.Memberlist
	tr   *peerTransport
	log  hclog.Logger
	recv chan Heartbeat

	mu    sync.Mutex
	peers []Peer
	// joined is the peer memberlist was last asked to join, and when.
	joined   Peer
	joinedAt time.Time
}

var _ Transport = (*Memberlist)(nil)

// NewMemberlist listens on bind as the member called name, with the
// pair's key (16, 24 or 32 bytes: AES-128, -192 or -256).
func NewMemberlist(name string, bind netip.AddrPort, key []byte, log hclog.Logger) (*Memberlist, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("starting the heartbeat on %s: the key has %d bytes, want 16, 24 or 32", bind, len(key))
	}
	h := &Memberlist{log: log, recv: make(chan Heartbeat, 64)}
	conf := memberlist.DefaultLANConfig()
	conf.Name = name
	conf.BindAddr, conf.BindPort = bind.Addr().String(), int(bind.Port())
	conf.AdvertiseAddr, conf.AdvertisePort = conf.BindAddr, conf.BindPort
	conf.SecretKey = slices.Clone(key)
	conf.GossipVerifyIncoming, conf.GossipVerifyOutgoing = true, true
	conf.ProbeInterval, conf.ProbeTimeout = time.Second, 500*time.Millisecond
	conf.GossipInterval, conf.SuspicionMult = 200*time.Millisecond, 3
	conf.PushPullInterval = 30 * time.Second
	conf.Delegate = delegate{h}
	conf.LogOutput = nil
	conf.Logger = stdlog.New(&keyWatch{w: log.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true, ForceLevel: hclog.Debug}), log: log}, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{conf.BindAddr}, BindPort: conf.BindPort, Logger: conf.Logger})
	if err != nil {
		return nil, fmt.Errorf("starting the heartbeat on %s: %w", bind, err)
	}
	h.tr = newPeerTransport(nt, h.fromPeer, log)
	conf.Transport = h.tr
	ml, err := memberlist.Create(conf)
	if err != nil {
		_ = h.tr.Shutdown()
		return nil, fmt.Errorf("starting the heartbeat on %s: %w", bind, err)
	}
	h.ml = ml
	return h, nil
}

// fromPeer is whether a packet (stream false: from the peer's address)
// or a stream (true: from the peer's host, any port) may come from a.
func (h *Memberlist) fromPeer(a netip.AddrPort, stream bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.peers {
		if p.Addr == a || stream && p.Addr.Addr() == a.Addr() {
			return true
		}
	}
	return false
}

// peerName is whether name is the registered name of a peer.
func (h *Memberlist) peerName(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.peers {
		if p.Name == name {
			return true
		}
	}
	return false
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
	return h.ml.Shutdown() // shuts the transport down too
}

// keyWatch passes memberlist's log on (at DEBUG), and says at WARN, once
// a minute at most, that a packet from the peer's address could not be
// decrypted: the two directors have different keys (only the peer's
// packets reach memberlist), so neither hears the other.
type keyWatch struct {
	w   io.Writer
	log hclog.Logger

	mu     sync.Mutex
	warned time.Time
}

func (k *keyWatch) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("Decrypt packet failed")) {
		k.mu.Lock()
		if now := time.Now(); now.Sub(k.warned) >= time.Minute {
			k.warned = now
			k.log.Warn("the peer's heartbeats cannot be decrypted: the two directors have different keys (ha key_file, or the consul key lock_key/heartbeat-key)",
				"detail", strings.TrimSpace(string(p)))
		}
		k.mu.Unlock()
	}
	return k.w.Write(p)
}

// peerTransport is memberlist's UDP and TCP transport, reading only what
// comes from the peer (allowed): a packet from anywhere else is dropped
// before memberlist sees it, a stream closed.
type peerTransport struct {
	*memberlist.NetTransport
	allowed func(a netip.AddrPort, stream bool) bool
	log     hclog.Logger
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once

	mu       sync.Mutex
	dropped  int
	loggedAt time.Time
}

var _ memberlist.NodeAwareTransport = (*peerTransport)(nil)

func newPeerTransport(nt *memberlist.NetTransport, allowed func(netip.AddrPort, bool) bool, log hclog.Logger) *peerTransport {
	t := &peerTransport{NetTransport: nt, allowed: allowed, log: log,
		packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), done: make(chan struct{})}
	go func() {
		for {
			select {
			case <-t.done:
				return
			case p := <-nt.PacketCh():
				if !t.admit(p.From, false) {
					continue
				}
				select {
				case t.packets <- p:
				case <-t.done:
					return
				}
			}
		}
	}()
	go func() {
		for {
			select {
			case <-t.done:
				return
			case c := <-nt.StreamCh():
				if !t.admit(c.RemoteAddr(), true) {
					_ = c.Close()
					continue
				}
				select {
				case t.streams <- c:
				case <-t.done:
					_ = c.Close()
					return
				}
			}
		}
	}()
	return t
}

// admit says whether what came from a may be read; what may not is
// counted, and logged at most once a minute.
func (t *peerTransport) admit(a net.Addr, stream bool) bool {
	ap, err := netip.ParseAddrPort(a.String())
	if err == nil && t.allowed(netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), stream) {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropped++
	if now := time.Now(); now.Sub(t.loggedAt) >= time.Minute {
		t.log.Warn("heartbeat traffic from an address that is not the peer's dropped", "from", a.String(), "stream", stream, "dropped", t.dropped)
		t.loggedAt, t.dropped = now, 0
	}
	return false
}

func (t *peerTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *peerTransport) StreamCh() <-chan net.Conn           { return t.streams }

// Shutdown stops the listeners, then the forwarding: memberlist's
// listeners hand each packet and stream on with a send that does not
// look at shutdown, and NetTransport.Shutdown waits for them, so the
// forwarding must drain them until they are gone (memberlist shuts its
// transport down first for the same reason). The other order hung a
// stopping director when a heartbeat came in between, its log ending at
// "drained".
func (t *peerTransport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	return err
}

// delegate receives memberlist's user messages.
type delegate struct{ h *Memberlist }

func (d delegate) NotifyMsg(b []byte) {
	var hb Heartbeat
	if err := json.Unmarshal(b, &hb); err != nil || !d.h.peerName(hb.From) {
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
