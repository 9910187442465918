package bgp_test

import (
	"context"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/bgp"
)

// The daemon's use: start at boot with nothing announced, announce the
// VIPs once the first sync is applied (and again whenever the set
// changes), withdraw on SIGTERM before the process exits.
func Example() {
	log := hclog.New(&hclog.LoggerOptions{Name: "lvs-sync"})
	s, err := bgp.New(bgp.Config{
		ASN: 65010,
		Neighbors: []bgp.Neighbor{
			{Address: netip.MustParseAddr("10.7.0.1"), ASN: 65000},
		},
	}, log.Named("bgp"))
	if err != nil {
		log.Error("bad bgp config", "error", err)
		return
	}
	if err := s.Start(context.Background()); err != nil {
		log.Error("bgp speaker did not start", "error", err)
		return
	}
	// After the first sync:
	_ = s.Announce([]netip.Prefix{netip.MustParsePrefix("10.10.10.60/32")})
	for _, n := range s.Status().Neighbors {
		log.Info("bgp neighbor", "address", n.Address, "state", n.State, "since", n.Since, "announced", n.Announced)
	}
	// On SIGTERM:
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Stop(ctx)
}
