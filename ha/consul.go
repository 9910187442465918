package ha

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/internal/blocking"
)

// ServiceName is the Consul service each director of a pair registers,
// with its interface address and the pair's lock_key in its meta.
const ServiceName = "lvs-sync-ha"

// ConsulLease is the lease at lock_key in Consul KV, and the pair's
// registration and discovery through the lvs-sync-ha service.
type ConsulLease struct {
	c     *api.Client
	key   string
	log   hclog.Logger
	clock clockwork.Clock
	// refused is set while the lease's writes are refused (logged once).
	refused atomic.Bool
	// Token, when set, is the ACL token each call carries, asked at each
	// call: the one token holder the catalog's queries use too, so that
	// a token rotated by a reload reaches the pair. "" (or nil) is the
	// client's own.
	Token func() string

	// reg is this director's registration, and the token it was made
	// with: Peers registers again when the token changed, since the agent
	// keeps a registration's token for its anti-entropy.
	regMu    sync.Mutex
	regName  string
	regAddr  netip.AddrPort
	regToken string
	// Retry is the wait after a failed read of the lease, less up to a
	// quarter of jitter (default 100ms); it does not grow, since the
	// pair's tempo bounds how late a director may hear Consul again.
	Retry time.Duration
}

// Connections is the pair's own connection budget to the agent: the
// lease's watch and the peers' watch (blocking), a write and its read,
// one to spare. The pair's client is its own, never the catalog's, so
// that a renewal never waits behind a sweep of the catalog.
const Connections = 4

// token is the token a call carries now.
func (l *ConsulLease) token() string {
	if l.Token == nil {
		return ""
	}
	return l.Token()
}

// q is a call's options: the token now, and ctx.
func (l *ConsulLease) q(ctx context.Context, q *api.QueryOptions) *api.QueryOptions {
	q.Token = l.token()
	return q.WithContext(ctx)
}

// NewConsulLease drives the lease at key through c.
func NewConsulLease(c *api.Client, key string, log hclog.Logger) *ConsulLease {
	return &ConsulLease{c: c, key: key, log: log, clock: clockwork.NewRealClock(), Retry: 100 * time.Millisecond}
}

// Watch reads the key with blocking queries until ctx ends, calling
// observe with each answer (the first at once, then one per change, and
// one each time a wait runs out) or with the error of a failed read. A
// failure is logged once until a read works again.
//
// The reads follow internal/blocking's rules with the pair's figures: no
// minimum interval (the active renews every Renew; the standby must see
// each renewal at once); a failed read retried after Retry, from index 0
// so that Consul's return is heard at once. An index that went back (a
// snapshot restored, a cluster rebuilt) makes a Fresh observation.
func (l *ConsulLease) Watch(ctx context.Context, observe func(Observation, error)) {
	failing := false
	f := blocking.Follower{BackoffBase: l.Retry, BackoffMax: l.Retry, Afresh: true, Clock: l.clock}
	blocking.Follow(ctx, f, func(ctx context.Context, index uint64) (*api.KVPair, uint64, error) {
		kv, meta, err := l.c.KV().Get(l.key, l.q(ctx, &api.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second}))
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, err
			}
			if !failing {
				l.log.Warn("cannot read the lease", "key", l.key, "error", err)
				failing = true
			}
			observe(Observation{}, fmt.Errorf("reading lease %s: %w", l.key, err))
			return nil, 0, err
		}
		if failing {
			l.log.Info("lease readable again", "key", l.key)
			failing = false
		}
		return kv, meta.LastIndex, nil
	}, func(kv *api.KVPair, a blocking.Answer) {
		if a.Reset {
			// A snapshot restored or a cluster rebuilt: this answer is the
			// key as it is now; the watch starts over.
			l.log.Warn("lease index went back; taking the key as it is now", "key", l.key, "index", a.Index, "was", a.Was)
		}
		o, err := l.observation(kv, a.Index)
		if err != nil {
			l.log.Warn("lease value is not a lease; treating it as held", "key", l.key, "error", err)
		}
		o.Fresh = a.Reset
		observe(o, nil)
	})
}

func (l *ConsulLease) observation(kv *api.KVPair, queryIndex uint64) (Observation, error) {
	if kv == nil {
		return Observation{Index: queryIndex}, nil
	}
	o := Observation{Present: true, Index: kv.ModifyIndex}
	if err := json.Unmarshal(kv.Value, &o.Lease); err != nil {
		// Someone else's value: held by nobody we know, never released.
		o.Lease = Lease{Holder: "?"}
		return o, fmt.Errorf("decoding lease %s: %w", l.key, err)
	}
	return o, nil
}

// Write is a compare-and-set of the lease (a transaction, which answers
// with the new ModifyIndex). A write that did not take reads the key.
func (l *ConsulLease) Write(ctx context.Context, w Write) WriteResult {
	value, err := json.Marshal(w.Lease)
	if err != nil {
		return WriteResult{Write: w, Err: err}
	}
	ops := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: l.key, Value: value, Index: w.Index}}}
	ok, resp, _, err := l.c.Txn().Txn(ops, l.q(ctx, &api.QueryOptions{}))
	if err != nil {
		return WriteResult{Write: w, Err: fmt.Errorf("writing lease %s: %w", l.key, err)}
	}
	r := WriteResult{Write: w, Refused: l.refusal(resp)}
	if ok && len(resp.Results) == 1 && resp.Results[0].KV != nil {
		r.OK, r.Index = true, resp.Results[0].KV.ModifyIndex
		return r
	}
	kv, meta, err := l.c.KV().Get(l.key, l.q(ctx, &api.QueryOptions{}))
	if err == nil {
		o, _ := l.observation(kv, meta.LastIndex)
		o.Fresh = true // read after the write failed: the key as it is now
		r.Current = &o
	}
	return r
}

// refusal is the ACL error among a transaction's errors, or nil. A
// compare-and-set that lost answers 409 with "index is stale"; one the
// token may not make answers 409 too, with "Permission denied": only
// the errors tell them apart. A refusal is logged once until a write
// takes.
func (l *ConsulLease) refusal(resp *api.TxnResponse) error {
	var denied string
	if resp != nil {
		for _, e := range resp.Errors {
			if e != nil && strings.Contains(strings.ToLower(e.What), "permission denied") {
				denied = e.What
				break
			}
		}
	}
	if denied == "" {
		if resp != nil && len(resp.Results) > 0 && l.refused.Swap(false) {
			l.log.Info("lease writable again", "key", l.key)
		}
		return nil
	}
	if !l.refused.Swap(true) {
		l.log.Warn("consul refuses the lease write: the token lacks key:write on the lock key; this director cannot become active",
			"key", l.key, "missing", "key:write", "error", denied)
	}
	return fmt.Errorf("writing lease %s: %s (the token needs key:write on %s)", l.key, denied, l.key)
}

// Peer is the other director of the pair, as registered in Consul.
type Peer struct {
	Name string
	Addr netip.AddrPort
}

// serviceID is unique per director and pair on one agent, and path-safe.
func (l *ConsulLease) serviceID(name string) string {
	return ServiceName + "-" + name + "-" + strings.NewReplacer("/", "_", "?", "_", "#", "_", "%", "_").Replace(l.key)
}

// Register registers this director's lvs-sync-ha instance with the local
// agent: its heartbeat address and, in its meta, lock_key and its name.
// A director of that name already registered for lock_key at another
// address is another director with this one's name (two on one agent,
// both named after its node; cloned hosts): Register refuses, since the
// pair tells its directors apart by name only.
func (l *ConsulLease) Register(name string, addr netip.AddrPort) error {
	svcs, _, err := l.c.Catalog().Service(ServiceName, "", l.q(context.Background(), &api.QueryOptions{}))
	if err != nil {
		return fmt.Errorf("listing %s for %s: %w", ServiceName, l.key, err)
	}
	for _, s := range svcs {
		if s.ServiceMeta["lock_key"] != l.key || s.ServiceMeta["director"] != name {
			continue
		}
		other, err := netip.ParseAddr(s.ServiceAddress)
		if err != nil || netip.AddrPortFrom(other, uint16(s.ServicePort)) == addr {
			continue
		}
		return fmt.Errorf("director %q is already registered for lock_key %s at %s (node %s); this one is at %s: "+
			"give each director of the pair its own ha { name } (it defaults to the consul agent's node name), "+
			"or deregister %s if that director is gone", name, l.key, netip.AddrPortFrom(other, uint16(s.ServicePort)), s.Node, addr, s.ServiceID)
	}
	tok := l.token()
	reg := &api.AgentServiceRegistration{ID: l.serviceID(name), Name: ServiceName, Address: addr.Addr().String(), Port: int(addr.Port()),
		Meta: map[string]string{"lock_key": l.key, "director": name}}
	if err := l.c.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{Token: tok}); err != nil {
		return fmt.Errorf("registering %s for %s: %w", ServiceName, l.key, err)
	}
	l.regMu.Lock()
	l.regName, l.regAddr, l.regToken = name, addr, tok
	l.regMu.Unlock()
	return nil
}

// reregister registers again with the token now held, if it changed.
func (l *ConsulLease) reregister() {
	l.regMu.Lock()
	name, addr, was := l.regName, l.regAddr, l.regToken
	l.regMu.Unlock()
	if name == "" || l.token() == was {
		return
	}
	if err := l.Register(name, addr); err != nil {
		l.log.Warn("cannot register again with the new token", "key", l.key, "error", err)
		return
	}
	l.log.Info("registered again with the new token", "key", l.key)
}

// deregisterTimeout bounds the deregistration a stopping director makes:
// with its agent unreachable (its link cut, the agent gone) the request
// would wait for TCP to give up, minutes, and the process would not exit
// on SIGTERM. Left behind, the registration names a director that is not
// there, which its peer already treats as silent.
const deregisterTimeout = 2 * time.Second

// Deregister takes the registration back, giving up after
// deregisterTimeout.
func (l *ConsulLease) Deregister(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), deregisterTimeout)
	defer cancel()
	if err := l.c.Agent().ServiceDeregisterOpts(l.serviceID(name), l.q(ctx, &api.QueryOptions{})); err != nil {
		return fmt.Errorf("deregistering %s for %s: %w", ServiceName, l.key, err)
	}
	return nil
}

// Peers follows the lvs-sync-ha instances of this lock_key other than
// self's with a blocking query, calling found with them on each change.
// The queries follow internal/blocking's rules: at least 100ms between
// them, a failed one retried after 1s doubling up to 5s (a peer
// re-registered shows within 5s of the agent's return).
func (l *ConsulLease) Peers(ctx context.Context, self string, found func([]Peer)) {
	var last []Peer
	f := blocking.Follower{MinInterval: 100 * time.Millisecond, BackoffBase: time.Second, BackoffMax: 5 * time.Second, Clock: l.clock}
	blocking.Follow(ctx, f, func(ctx context.Context, index uint64) ([]*api.CatalogService, uint64, error) {
		l.reregister()
		svcs, meta, err := l.c.Catalog().Service(ServiceName, "", l.q(ctx, &api.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second}))
		if err != nil {
			return nil, 0, err
		}
		return svcs, meta.LastIndex, nil
	}, func(svcs []*api.CatalogService, _ blocking.Answer) {
		var peers []Peer
		for _, s := range svcs {
			if s.ServiceMeta["lock_key"] != l.key || s.ServiceMeta["director"] == self {
				continue
			}
			addr, err := netip.ParseAddr(s.ServiceAddress)
			if err != nil {
				continue
			}
			peers = append(peers, Peer{Name: s.ServiceMeta["director"], Addr: netip.AddrPortFrom(addr, uint16(s.ServicePort))})
		}
		if !equalPeers(peers, last) {
			l.log.Info("peers found", "key", l.key, "peers", fmt.Sprint(peers))
			last = peers
			found(peers)
		}
	})
}

func equalPeers(a, b []Peer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// errNoPeer is a heartbeat with nobody to send it to.
var errNoPeer = errors.New("no peer known")

// HeartbeatKeySuffix names the Consul KV key, lock_key + suffix, that
// keeps the pair's heartbeat key when the config gives no key_file.
const HeartbeatKeySuffix = "/heartbeat-key"

// HeartbeatKey is the pair's heartbeat key in Consul KV, next to the
// lease: the first director to start makes it (32 random bytes, base64,
// written only if absent), the other reads it, as `consul keyring` keeps
// the gossip key the agents share.
func (l *ConsulLease) HeartbeatKey() ([]byte, error) {
	k := l.key + HeartbeatKeySuffix
	for range 3 {
		kv, _, err := l.c.KV().Get(k, l.q(context.Background(), &api.QueryOptions{}))
		if err != nil {
			return nil, fmt.Errorf("reading the heartbeat key %s: %w", k, err)
		}
		if kv != nil {
			return ParseKey(kv.Value, "consul key "+k)
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("making the heartbeat key %s: %w", k, err)
		}
		ok, _, err := l.c.KV().CAS(&api.KVPair{Key: k, Value: []byte(base64.StdEncoding.EncodeToString(key))}, &api.WriteOptions{Token: l.token()})
		if err != nil {
			return nil, fmt.Errorf("writing the heartbeat key %s: %w", k, err)
		}
		if ok {
			l.log.Info("made the pair's heartbeat key", "key", k)
			return key, nil
		}
	}
	return nil, fmt.Errorf("the heartbeat key %s keeps changing", k)
}

// ParseKey reads a heartbeat key as `consul keygen` prints one: base64
// of 16, 24 or 32 bytes; from names where it was read.
func ParseKey(b []byte, from string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("heartbeat key in %s: not base64: %w", from, err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("heartbeat key in %s: %d bytes, want 16, 24 or 32 (consul keygen makes one)", from, len(key))
}

// ReadKeyFile reads ha's key_file.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the heartbeat key: %w", err)
	}
	return ParseKey(b, path)
}
