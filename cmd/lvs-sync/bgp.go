package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
)

// The wiring of director.bgp into run: the speaker made from the bgp
// block (newSpeaker), started before the daemon, handed to it, and
// stopped after it returned (it withdrew every VIP and waited
// shutdown_delay by then).

// bgpSpeaker is what run does with the speaker: start it, hand it to the
// daemon, stop it.
type bgpSpeaker interface {
	daemon.Speaker
	Start(ctx context.Context) error
	// Stop withdraws what is left and closes the sessions.
	Stop(ctx context.Context) error
}

// speakerStopTimeout bounds how long a stopping speaker may take to send
// its last withdrawals and close its sessions.
const speakerStopTimeout = 5 * time.Second

// startSpeaker makes and starts the speaker of cfg's director.bgp; nil
// without one. It announces nothing until the daemon says so.
func startSpeaker(ctx context.Context, cfg *config.Config, log hclog.Logger) (bgpSpeaker, error) {
	b := cfg.Director.BGP
	if b == nil {
		return nil, nil
	}
	sp, err := newSpeaker(b, log)
	if err != nil {
		return nil, fmt.Errorf("director.bgp: %w", err)
	}
	if err := sp.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the bgp speaker (asn %d): %w", b.ASN, err)
	}
	log.Info("bgp speaker started", "asn", b.ASN, "router_id", b.RouterID, "listen_port", b.ListenPort, "neighbors", len(b.Neighbors))
	return sp, nil
}

// stopSpeaker closes the speaker's sessions, bounded by speakerStopTimeout.
func stopSpeaker(sp bgpSpeaker, log hclog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), speakerStopTimeout)
	defer cancel()
	if err := sp.Stop(ctx); err != nil {
		log.Warn("the bgp speaker did not stop cleanly", "error", err)
	}
}
