package ha

import (
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// A sync daemon left running with another sync id (ipvsadm, keepalived,
// an earlier config) answers EEXIST to a start: it is replaced with this
// director's, not taken as this director's own.
func TestSyncDaemonWithAnotherIDIsReplaced(t *testing.T) {
	for _, role := range []ipvs.SyncRole{ipvs.SyncMaster, ipvs.SyncBackup} {
		k := ipvs.NewMemKernel(ipvs.State{})
		if err := k.StartDaemon(ipvs.SyncDaemon{Role: role, Interface: "eth1", SyncID: 7}); err != nil {
			t.Fatal(err)
		}
		s := syncDaemons{k: k, iface: "eth0", id: 1, log: hclog.NewNullLogger()}
		if err := s.Start(role); err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		ds, _ := k.Daemons()
		want := ipvs.SyncDaemon{Role: role, Interface: "eth0", SyncID: 1}
		if len(ds) != 1 || ds[0] != want {
			t.Fatalf("%s: daemons %v, want %v", role, ds, want)
		}
		// Its own daemon running is no error and is left alone.
		if err := s.Start(role); err != nil {
			t.Fatalf("%s again: %v", role, err)
		}
	}
}
