package main

import (
	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/bgp"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/status"
)

// newSpeaker makes the speaker of a bgp block: config's BGP mapped onto
// the bgp package's; log is run's "bgp" logger.
func newSpeaker(b *config.BGP, log hclog.Logger) (bgpSpeaker, error) {
	cfg := bgp.Config{ASN: b.ASN, RouterID: b.RouterID, ListenPort: b.ListenPort}
	for _, n := range b.Neighbors {
		cfg.Neighbors = append(cfg.Neighbors, bgp.Neighbor{Address: n.Address, ASN: n.ASN, Port: n.Port, HoldTime: n.HoldTime, Password: n.Password})
	}
	sp, err := bgp.New(cfg, log)
	if err != nil {
		return nil, err
	}
	return speaker{sp}, nil
}

// speaker is the bgp package's speaker as the daemon sees it.
type speaker struct{ *bgp.Speaker }

// State is the speaker's Status in the status room's words.
func (s speaker) State() status.Speaker {
	st := s.Status()
	out := status.Speaker{Announced: st.Announced}
	for _, n := range st.Neighbors {
		out.Neighbors = append(out.Neighbors, status.SpeakerNeighbor{Address: n.Address, ASN: n.ASN, State: n.State,
			Since: n.Since, Announced: n.Announced, LastError: n.LastError})
	}
	return out
}
