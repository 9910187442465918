package status

import (
	"net/netip"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/announce"
)

// BGPView is a director of an all-active tier (director.bgp): its
// sessions with its routers, the prefixes it announces, and each VIP
// announced or not, with why.
type BGPView struct {
	Neighbors []NeighborView `json:"neighbors"`
	// Announced are the prefixes the speaker announces now.
	Announced []string  `json:"announced"`
	VIPs      []VIPView `json:"vips"`
}

// NeighborView is one router's session.
type NeighborView struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	// State is the session's BGP state, lowercase: "established",
	// "active", "connect", "idle", ...
	State string `json:"state"`
	// Since is when the session entered State; Uptime, when it is
	// established, how long ago that was (whole seconds).
	Since     time.Time `json:"since,omitzero"`
	Uptime    int64     `json:"uptime_seconds,omitempty"`
	Announced int       `json:"announced"`
	LastError string    `json:"last_error,omitempty"`
}

// VIPView is one VIP's announcement.
type VIPView struct {
	Address   string `json:"address"`
	Announced bool   `json:"announced"`
	// Reason is why it is not announced: "not synced yet", "stopping",
	// "pool empty".
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
}

// Speaker is what the BGP speaker says of itself, in the speaker's
// words (bgp.Status); SpeakerNeighbor one of its sessions.
type Speaker struct {
	Neighbors []SpeakerNeighbor
	Announced []netip.Prefix
}

// SpeakerNeighbor is bgp.NeighborStatus.
type SpeakerNeighbor struct {
	Address   netip.Addr
	ASN       uint32
	State     string
	Since     time.Time
	Announced int
	LastError string
}

// Established is the State of a session that is up.
const Established = "established"

// BGPOf is the view of a bgp director at now: the speaker's sessions
// and announcements, and the announce rule's VIPs.
func BGPOf(sp Speaker, vips []announce.VIP, now time.Time) *BGPView {
	v := &BGPView{Neighbors: []NeighborView{}, Announced: []string{}, VIPs: []VIPView{}}
	for _, n := range sp.Neighbors {
		nv := NeighborView{Address: n.Address.String(), ASN: n.ASN, State: n.State, Since: n.Since, Announced: n.Announced, LastError: n.LastError}
		if n.State == Established && !n.Since.IsZero() {
			nv.Uptime = int64(now.Sub(n.Since) / time.Second)
		}
		v.Neighbors = append(v.Neighbors, nv)
	}
	for _, p := range sp.Announced {
		v.Announced = append(v.Announced, p.String())
	}
	for _, a := range vips {
		v.VIPs = append(v.VIPs, VIPView{Address: a.Addr.String(), Announced: a.Announced, Reason: string(a.Reason), Since: a.Since})
	}
	return v
}
