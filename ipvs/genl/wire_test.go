package genl

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestWireRoundTrip: every request the encoder writes is one well-formed
// netlink message whose service and destination attributes read back as
// written. (The VM tests read them back through the kernel, moby/ipvs and
// ipvsadm.)
func TestWireRoundTrip(t *testing.T) {
	v4 := lvs.ServiceKey{Protocol: lvs.SCTP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 3868}
	v6 := lvs.ServiceKey{Protocol: lvs.UDP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 53}
	mark6 := lvs.ServiceKey{FWMark: 9, Addr: netip.IPv6Unspecified()}
	spec := &ipvs.Service{Scheduler: "mh", Flags: ipvs.FlagPersistent | 0x8 | 0x10, Timeout: 300, Netmask: 0x00ffffff}
	for _, c := range []struct {
		op       ipvs.Op
		cmd      uint8
		withSpec bool
	}{
		{ipvs.Op{Kind: ipvs.AddService, Service: v4, Spec: spec}, cmdNewService, true},
		{ipvs.Op{Kind: ipvs.UpdateService, Service: v6, Spec: &ipvs.Service{Scheduler: "rr", Netmask: 64}}, cmdSetService, true},
		{ipvs.Op{Kind: ipvs.DeleteService, Service: mark6}, cmdDelService, false},
		{ipvs.Op{Kind: ipvs.AddReal, Service: v4, Real: lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.1"), Port: 8080}, RealSpec: ipvs.Real{Weight: 65535, Forward: lvs.Masq, UpperThreshold: 100, LowerThreshold: 50}}, cmdNewDest, false},
		{ipvs.Op{Kind: ipvs.UpdateReal, Service: mark6, Real: lvs.RealKey{Addr: netip.MustParseAddr("2001:db8::2")}, RealSpec: ipvs.Real{Weight: 0, Forward: lvs.Tunnel, UpperThreshold: lvs.MaxThreshold}}, cmdSetDest, false},
		{ipvs.Op{Kind: ipvs.DeleteReal, Service: v6, Real: lvs.RealKey{Addr: netip.MustParseAddr("2001:db8::3"), Port: 53}}, cmdDelDest, false},
	} {
		t.Run(c.op.String(), func(t *testing.T) {
			var e encoder
			if err := e.op(42, unix.NLM_F_REQUEST, 7, c.op); err != nil {
				t.Fatal(err)
			}
			h, payload, rest, err := nextMessage(e.b)
			if err != nil || len(rest) != 0 || int(h.len) != len(e.b) || h.typ != 42 || h.seq != 7 || h.flags != unix.NLM_F_REQUEST {
				t.Fatalf("header %+v, rest %d, %v", h, len(rest), err)
			}
			if payload[0] != c.cmd || payload[1] != ipvsGenlVersion {
				t.Errorf("command %d version %d, want %d 1", payload[0], payload[1], c.cmd)
			}
			k, s, err := parseService(payload)
			if err != nil || k != c.op.Service {
				t.Fatalf("service %v (%v), want %v", k, err, c.op.Service)
			}
			if c.withSpec && !s.Equal(c.op.Spec) {
				t.Errorf("settings %+v, want %+v", *s, *c.op.Spec)
			}
			if !c.withSpec && (s.Scheduler != "" || s.Flags != 0 || s.Timeout != 0 || s.Netmask != 0) {
				t.Errorf("a key-only service carries settings: %+v", *s)
			}
			_, hasDest := nested(payload, attrDest)
			if isReal := c.cmd >= cmdNewDest; hasDest != isReal {
				t.Fatalf("destination attribute: %v, want %v", hasDest, isReal)
			}
			if !hasDest {
				return
			}
			rk, r, err := parseReal(payload, unix.AF_UNSPEC) // the real's own family is sent
			if err != nil || rk != c.op.Real {
				t.Fatalf("real %v (%v), want %v", rk, err, c.op.Real)
			}
			if c.cmd != cmdDelDest && r != c.op.RealSpec {
				t.Errorf("real %+v, want %+v", r, c.op.RealSpec)
			}
		})
	}
}

// TestParseSkipsWhatItCannotRead: truncated or foreign input is an error,
// never a panic or a made-up key.
func TestParseSkipsWhatItCannotRead(t *testing.T) {
	var e encoder
	if err := e.op(42, unix.NLM_F_REQUEST, 1, ipvs.Op{Kind: ipvs.DeleteService, Service: lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}}); err != nil {
		t.Fatal(err)
	}
	for n := range len(e.b) {
		if _, payload, _, err := nextMessage(e.b[:n]); err == nil {
			if _, _, err := parseService(payload); err == nil {
				t.Errorf("%d of %d bytes parsed as a service", n, len(e.b))
			}
		}
	}
	if _, _, err := parseService([]byte{cmdGetService, 1, 0, 0}); err == nil {
		t.Error("a message without a service attribute parsed")
	}
}

// TestThresholdAboveIntMaxIsNeverSent: a real whose threshold some kernels
// refuse (above INT_MAX) is refused with EINVAL before it is encoded, so
// that every 6.1 build gives the same answer.
func TestThresholdAboveIntMaxIsNeverSent(t *testing.T) {
	svc := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	rk := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.1"), Port: 80}
	for _, r := range []ipvs.Real{
		{Weight: 1, Forward: lvs.Route, UpperThreshold: lvs.MaxThreshold + 1},
		{Weight: 1, Forward: lvs.Route, UpperThreshold: 4294967295, LowerThreshold: 4294967295},
	} {
		for _, kind := range []ipvs.OpKind{ipvs.AddReal, ipvs.UpdateReal} {
			var e encoder
			err := e.op(42, unix.NLM_F_REQUEST, 1, ipvs.Op{Kind: kind, Service: svc, Real: rk, RealSpec: r})
			if !errors.Is(err, syscall.EINVAL) {
				t.Errorf("%v with -x %d -y %d: got %v, want EINVAL", kind, r.UpperThreshold, r.LowerThreshold, err)
			}
		}
	}
}
