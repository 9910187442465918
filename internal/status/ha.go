package status

import "github.com/lvs-sync/lvs-sync/ha"

// HAOf is the view of a director's place in its pair, from its runner's
// state.
func HAOf(s ha.State) HAView {
	return HAView{Name: s.Name, Role: s.Role, Epoch: s.Epoch, LockHolder: s.Holder, LeaseEpoch: s.LeaseEpoch,
		Peer: s.Peer, PeerRole: s.PeerRole, PeerHeard: s.PeerHeard, ConsulOK: s.ConsulOK, Carrier: s.Carrier,
		SyncDaemons: s.SyncDaemons, Takeovers: s.Takeovers, LastTakeover: s.LastTakeover, LastStepDown: s.LastStepDown,
		LeaseError: s.LeaseError, Unready: s.Unready, PeerUnready: s.PeerUnready}
}
