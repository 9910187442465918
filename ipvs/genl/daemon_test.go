package genl

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// TestDaemonWire: a NEW_DAEMON request carries the daemon nested as the
// kernel parses it, and reads back as written; DEL_DAEMON carries the
// role alone.
func TestDaemonWire(t *testing.T) {
	for _, c := range []struct {
		cmd  uint8
		role ipvs.SyncRole
		d    *ipvs.SyncDaemon
		want ipvs.SyncDaemon
	}{
		{cmdNewDaemon, ipvs.SyncMaster, &ipvs.SyncDaemon{Role: ipvs.SyncMaster, Interface: "eth0", SyncID: 1}, ipvs.SyncDaemon{Role: ipvs.SyncMaster, Interface: "eth0", SyncID: 1}},
		{cmdNewDaemon, ipvs.SyncBackup, &ipvs.SyncDaemon{Role: ipvs.SyncBackup, Interface: "a-fifteen-chars", SyncID: 0}, ipvs.SyncDaemon{Role: ipvs.SyncBackup, Interface: "a-fifteen-chars"}},
		{cmdDelDaemon, ipvs.SyncBackup, nil, ipvs.SyncDaemon{Role: ipvs.SyncBackup}},
	} {
		var e encoder
		m := e.begin(42, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 9, c.cmd, ipvsGenlVersion)
		e.daemon(c.role, c.d)
		e.end(m)
		h, payload, rest, err := nextMessage(e.b)
		if err != nil || len(rest) != 0 || h.typ != 42 || h.seq != 9 {
			t.Fatalf("header %+v, rest %d, %v", h, len(rest), err)
		}
		if payload[0] != c.cmd {
			t.Errorf("command %d, want %d", payload[0], c.cmd)
		}
		if v, _ := nested(payload, attrDaemon); len(e.b)%4 != 0 || len(v) == 0 {
			t.Errorf("daemon attribute %x in a message of %d bytes", v, len(e.b))
		}
		got, err := parseDaemon(payload)
		if err != nil || got != c.want {
			t.Errorf("read back %v (%v), want %v", got, err, c.want)
		}
	}
	if _, err := parseDaemon(make([]byte, genlHdrLen)); err == nil {
		t.Error("a message without a daemon parsed")
	}
}

// TestDaemonRefusedLocally: what the kernel would refuse or misread never
// reaches it (a closed client would fail any call that did).
func TestDaemonRefusedLocally(t *testing.T) {
	for _, c := range []struct {
		role ipvs.SyncRole
		link *string
	}{
		{0, nil}, {3, nil}, {ipvs.SyncMaster, new(string)}, {ipvs.SyncBackup, ptr("sixteen-chars-xx")},
	} {
		if err := checkDaemon(c.role, c.link); err != unix.EINVAL {
			t.Errorf("role %d link %v: %v, want EINVAL", c.role, c.link, err)
		}
	}
	if err := checkDaemon(ipvs.SyncBackup, ptr("eth0")); err != nil {
		t.Errorf("a backup on eth0: %v", err)
	}
}

func ptr(s string) *string { return &s }
