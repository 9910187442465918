//go:build vmguest

package e2e

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// SCTP through a masq VIP: Go has no SCTP, so the sockets are the
// kernel's one-to-one style (SOCK_STREAM, IPPROTO_SCTP) through x/sys/unix.
// Each end is bound to one address, so that its INIT (INIT-ACK) lists
// only that one: an end bound to every address offers the others (the
// VIPs on a real's lo, the client's other link) as paths around the NAT.
const sctpPort = 5000

// sctpServers start once per guest run: each real server accepts an
// association on its own address, writes its namespace's name and closes.
var sctpServers = sync.OnceValue(func() error {
	for _, r := range reals {
		fd, err := inNamespace(r.ns, func() (int, error) {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
			if err != nil {
				return -1, fmt.Errorf("sctp socket (is the sctp module loaded?): %w", err)
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return -1, err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: netip.MustParseAddr(r.addr).As4(), Port: sctpPort}); err != nil {
				return -1, err
			}
			return fd, unix.Listen(fd, 64)
		})
		if err != nil {
			return fmt.Errorf("sctp server of %s: %w", r.ns, err)
		}
		go func() {
			for {
				c, _, err := unix.Accept(fd)
				if err != nil {
					return
				}
				_, _ = unix.Write(c, []byte(r.ns))
				_ = unix.Close(c)
			}
		}()
	}
	return nil
})

// askSCTP opens an association from the client's masq link to vip, reads
// the answer and closes it; an error if any step takes over a second.
func askSCTP(vip string) (string, error) {
	return inNamespace("client", func() (string, error) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval(time.Second.Nanoseconds())
		for _, opt := range []int{unix.SO_SNDTIMEO, unix.SO_RCVTIMEO} {
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
				return "", err
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{10, 2, 0, 100}}); err != nil {
			return "", err
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: netip.MustParseAddr(vip).As4(), Port: sctpPort}); err != nil {
			return "", fmt.Errorf("sctp connect to %s: %w", vip, err)
		}
		buf := make([]byte, 64)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return "", fmt.Errorf("sctp read from %s: %w", vip, err)
		}
		return string(buf[:n]), nil
	})
}

// realsOfSCTP returns the weights of the reals of the SCTP service at vip.
func realsOfSCTP(t *testing.T, vip string) map[string]int {
	t.Helper()
	return weightsAt(t, lvs.SCTP, vip, sctpPort)
}

const sctpConfig = `virtual_service "sig-masq" {
  address    = "10.10.10.61:5000"
  protocol   = "sctp"
  forwarding = "masq"
  scheduler  = "rr"
  service    = "sig"
}
`

// TestSCTPTraffic: associations through an SCTP masq virtual service from
// Consul reach every real server in turn (rr); a real going critical takes
// no new association once it leaves the table, within a second, and every
// association is answered throughout.
func TestSCTPTraffic(t *testing.T) {
	if err := sctpServers(); err != nil {
		t.Fatal(err)
	}
	for i, r := range reals {
		id := fmt.Sprintf("sig%d", i+1)
		registerPassing(t, &api.AgentServiceRegistration{ID: id, Name: "sig", Address: r.addr, Port: sctpPort})
	}
	cfg := writeServicesConfig(t, sctpConfig)
	t.Cleanup(func() { _, _ = sh("/sbin/ipvsadm", "-D", "--sctp-service", fmt.Sprintf("%s:%d", vipMasq, sctpPort)) })
	l := startLVS(t, cfg)
	l.waitSynced(t)
	want := func(skip int) map[string]int {
		m := map[string]int{}
		for i, r := range reals {
			if i != skip {
				m[fmt.Sprintf("%s:%d", r.addr, sctpPort)] = 1
			}
		}
		return m
	}
	waitFor(t, "three reals", 15*time.Second, func() bool { return testenv.SameWeights(realsOfSCTP(t, vipMasq), want(-1)) })
	count := func(n int) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for i := range n {
			real, err := askSCTP(vipMasq)
			if err != nil {
				t.Fatalf("association %d: %v\n%s", i, err, ipvsadm(t, "-Lnc"))
			}
			seen[real]++
		}
		return seen
	}
	if got := count(6); got["rs1"] != 2 || got["rs2"] != 2 || got["rs3"] != 2 {
		t.Errorf("answers %v, want rs1, rs2 and rs3 twice each", got)
	}
	t.Logf("ipvsadm -Ln with three SCTP reals:\n%s", ipvsadm(t, "-Ln", "--sctp-service", fmt.Sprintf("%s:%d", vipMasq, sctpPort)))

	setCheck(t, "sig2", api.HealthCritical)
	// Out of rotation (weight 0, or gone) within a second; out of the
	// table once its closed associations are counted out (at least 500ms
	// at weight 0 for a real with connections, the drain's rule).
	rs2 := fmt.Sprintf("%s:%d", reals[1].addr, sctpPort)
	out := waitFor(t, "rs2 out of rotation", 5*time.Second, func() bool { w, in := realsOfSCTP(t, vipMasq)[rs2]; return !in || w == 0 })
	t.Logf("sctp: the critical real out of rotation %v after the change", out.Round(time.Millisecond))
	if out > time.Second {
		t.Errorf("out of rotation after %v, want within 1s", out)
	}
	if got := count(6); got["rs2"] != 0 || got["rs1"] != 3 || got["rs3"] != 3 {
		t.Errorf("answers with rs2 critical: %v, want rs1 and rs3 three times each", got)
	}
	took := waitFor(t, "rs2 leaves", 10*time.Second, func() bool { return testenv.SameWeights(realsOfSCTP(t, vipMasq), want(1)) })
	t.Logf("sctp: the critical real left the table %v after the change", (out + took).Round(time.Millisecond))
	setCheck(t, "sig2", api.HealthPassing)
	waitFor(t, "rs2 back", 5*time.Second, func() bool { return testenv.SameWeights(realsOfSCTP(t, vipMasq), want(-1)) })
	if got := count(3); got["rs2"] != 1 {
		t.Errorf("answers with rs2 back: %v", got)
	}
}
