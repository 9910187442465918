package status

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/ha"
)

// TestHAOf: every field of the runner's state that the view shows is
// carried, under the view's names.
func TestHAOf(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := ha.State{Status: ha.Status{Name: "a", Role: "active", Epoch: 7, Holder: "a", LeaseEpoch: 7, LeaseIndex: 99,
		LeaseChanged: at, ConsulOK: true, Carrier: true, Peer: "b", PeerRole: "standby", PeerHeard: at, Takeovers: 2,
		LastTakeover: at, LastStepDown: "peer lost", LeaseError: "denied", Unready: "no sync", PeerUnready: "no consul"},
		SyncDaemons: "master+backup"}
	want := HAView{Name: "a", Role: "active", Epoch: 7, LockHolder: "a", LeaseEpoch: 7, Peer: "b", PeerRole: "standby",
		PeerHeard: at, ConsulOK: true, Carrier: true, SyncDaemons: "master+backup", Takeovers: 2, LastTakeover: at,
		LastStepDown: "peer lost", LeaseError: "denied", Unready: "no sync", PeerUnready: "no consul"}
	got := HAOf(s)
	if got != want {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("HAOf:\n got %s\nwant %s", g, w)
	}
}
