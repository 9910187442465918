package vmtest

import "testing"

func TestBootSmoke(t *testing.T) {
	stage := Stage(t)
	code := Boot(t, stage, Options{Command: "ipvsadm -Ln; /sbin/ip -br addr; cat /proc/net/ip_vs; exit 3"})
	if code != 3 {
		t.Fatalf("exit %d", code)
	}
}
