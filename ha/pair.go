package ha

// A director's part of its pair over Consul and memberlist, from joining
// to leaving: the order in which it listens, registers, runs and goes.

import (
	"context"
	"net/netip"

	"github.com/hashicorp/go-hclog"
)

// Pair is this director's part of an HA pair over Consul and memberlist:
// registered under its name, its heartbeat listening, its Runner ready
// to run.
type Pair struct {
	Name   string
	Runner *Runner
	lease  *ConsulLease
	ml     *Memberlist
	log    hclog.Logger
}

// JoinPair sets this director up in the pair of lease: the heartbeat key
// (keyFile's, else the one the pair keeps in Consul), the heartbeat
// listening on bind, the registration under opts.Name at bind, and the
// runner of opts over them (JoinPair sets its Lease and Transport).
func JoinPair(lease *ConsulLease, bind netip.AddrPort, keyFile string, opts Options) (*Pair, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	var key []byte
	var err error
	if keyFile != "" {
		key, err = ReadKeyFile(keyFile)
	} else {
		key, err = lease.HeartbeatKey()
	}
	if err != nil {
		return nil, err
	}
	ml, err := NewMemberlist(opts.Name, bind, key, opts.Logger.Named("heartbeat"))
	if err != nil {
		return nil, err
	}
	if err := lease.Register(opts.Name, bind); err != nil {
		_ = ml.Close()
		return nil, err
	}
	opts.Lease, opts.Transport = lease, ml
	runner, err := NewRunner(opts)
	if err != nil {
		_ = ml.Close()
		return nil, err
	}
	return &Pair{Name: opts.Name, Runner: runner, lease: lease, ml: ml, log: opts.Logger}, nil
}

// Run runs the pair's loop until ctx ends, then steps down if active,
// deregisters and closes the heartbeat.
func (p *Pair) Run(ctx context.Context) {
	go p.lease.Peers(ctx, p.Name, p.ml.SetPeers)
	_ = p.Runner.Run(ctx)
	if err := p.lease.Deregister(p.Name); err != nil {
		p.log.Warn("cannot deregister", "error", err)
	}
	_ = p.ml.Close()
}
