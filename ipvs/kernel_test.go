//go:build vmguest

// These tests run in the VM (see e2e.TestInKernel), as root against the
// kernel's real IPVS.
package ipvs

import (
	"github.com/lvs-sync/lvs-sync/lvs"

	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"
)

func openKernel(t *testing.T) *Netlink {
	t.Helper()
	k, err := OpenNetlink(5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// cleanup deletes the services a test made, whatever happened.
func cleanup(t *testing.T, k Kernel, keys ...lvs.ServiceKey) {
	t.Cleanup(func() {
		for _, key := range keys {
			_ = k.DelService(key)
		}
	})
}

// TestNetlinkConverges writes every kind of service and real through
// netlink, reads the table back and diffs: the diff must be empty, which
// only holds if the kernel's quirks (hashed flag, local node) are
// normalised.
func TestNetlinkConverges(t *testing.T) {
	k := openKernel(t)
	web := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.20.0.1"), Port: 80}
	dns6 := lvs.ServiceKey{Protocol: lvs.UDP, Addr: netip.MustParseAddr("2001:db8::53"), Port: 53}
	sctp := lvs.ServiceKey{Protocol: lvs.SCTP, Addr: netip.MustParseAddr("10.20.0.2"), Port: 3868}
	cleanup(t, k, web, dns6, sctp)
	desired := State{
		web: {Scheduler: "wlc", Flags: FlagPersistent, Timeout: 300, Netmask: lvs.HostMask(web.Addr), Reals: map[lvs.RealKey]Real{
			{Addr: netip.MustParseAddr("10.20.1.1"), Port: 80}:   {Weight: 5, Forward: lvs.Route},
			{Addr: netip.MustParseAddr("10.20.1.2"), Port: 80}:   {Weight: 0, Forward: lvs.Tunnel},
			{Addr: netip.MustParseAddr("10.20.1.3"), Port: 8080}: {Weight: 1, Forward: lvs.Masq},
			{Addr: netip.MustParseAddr("127.0.0.1"), Port: 80}:   {Weight: 1, Forward: lvs.Masq},
		}},
		dns6: {Scheduler: "rr", Netmask: lvs.HostMask(dns6.Addr), Reals: map[lvs.RealKey]Real{
			{Addr: netip.MustParseAddr("2001:db8::11"), Port: 5353}: {Weight: 2, Forward: lvs.Masq},
		}},
		sctp: {Scheduler: "sh", Netmask: lvs.HostMask(sctp.Addr), Reals: map[lvs.RealKey]Real{
			{Addr: netip.MustParseAddr("10.20.1.1"), Port: 3868}: {Weight: 1, Forward: lvs.Masq},
		}},
	}
	mine := func(key lvs.ServiceKey) bool { return desired[key] != nil }
	current, err := Read(k, mine)
	if err != nil {
		t.Fatal(err)
	}
	plan := Diff(desired, current, mine)
	if res := Apply(k, plan, nil); res.Err() != nil {
		t.Fatal(res.Err())
	}
	current, err = Read(k, mine)
	if err != nil {
		t.Fatal(err)
	}
	if again := Diff(desired, current, mine); len(again) != 0 {
		t.Fatalf("the diff does not converge; still:\n%s\nkernel:\n%s", planStrings(again), current)
	}
	// Older kernels report a local real as "local node" whatever it was
	// added with; 6.x decides local delivery when transmitting and reports
	// the method as given. Diff converges either way (above).
	f := current[web].Reals[lvs.RealKey{Addr: netip.MustParseAddr("127.0.0.1"), Port: 80}].Forward
	if f != lvs.LocalNode && f != lvs.Masq {
		t.Errorf("a local real came back as %s", f)
	}
	t.Logf("this kernel reports a local masq real as %s", f)

	// Change weight, method and scheduler: only those changes are planned.
	desired[web].Scheduler = "wrr"
	desired[web].Reals[lvs.RealKey{Addr: netip.MustParseAddr("10.20.1.2"), Port: 80}] = Real{Weight: 3, Forward: lvs.Route}
	plan = Diff(desired, current, mine)
	want := "ipvsadm -E -t 10.20.0.1:80 -s wrr -p 300\nipvsadm -e -t 10.20.0.1:80 -r 10.20.1.2:80 -g -w 3"
	if got := planStrings(plan); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	if res := Apply(k, plan, nil); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if current, err = Read(k, mine); err != nil {
		t.Fatal(err)
	}
	if again := Diff(desired, current, mine); len(again) != 0 {
		t.Errorf("after the update the diff is still:\n%s", planStrings(again))
	}

	// Remove everything: reals and services go, in that order.
	plan = Diff(State{}, current, mine)
	if res := Apply(k, plan, nil); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if current, err = Read(k, mine); err != nil {
		t.Fatal(err)
	}
	for key := range desired {
		if current[key] != nil {
			t.Errorf("%s still in the kernel", key)
		}
	}
}

// TestKernelErrnos pins the errors Apply relies on to be idempotent.
func TestKernelErrnos(t *testing.T) {
	k := openKernel(t)
	key := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.20.0.9"), Port: 80}
	rk := lvs.RealKey{Addr: netip.MustParseAddr("10.20.1.9"), Port: 80}
	cleanup(t, k, key)
	svc := &Service{Scheduler: "rr", Netmask: lvs.HostMask(key.Addr)}
	if err := k.AddService(key, svc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		err  error
		want syscall.Errno
	}{
		{"add an existing service", k.AddService(key, svc), syscall.EEXIST},
		{"delete a real that is not there", k.DelReal(key, rk), syscall.ENOENT},
		{"update a real that is not there", k.UpdateReal(key, rk, Real{Weight: 1, Forward: lvs.Route}), syscall.ENOENT},
		{"delete a service that is not there", k.DelService(lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.20.0.10"), Port: 80}), syscall.ESRCH},
		{"add to a service that is not there", k.AddReal(lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.20.0.10"), Port: 80}, rk, Real{Weight: 1}), syscall.ESRCH},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.what, c.err, c.want)
		}
	}
	if err := k.AddReal(key, rk, Real{Weight: 1, Forward: lvs.Route}); err != nil {
		t.Fatal(err)
	}
	if err := k.AddReal(key, rk, Real{Weight: 1, Forward: lvs.Route}); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("add an existing real: %v", err)
	}
	before := k.Calls()
	if res := Apply(k, Plan{{Kind: AddReal, Service: key, Real: rk, RealSpec: Real{Weight: 4, Forward: lvs.Route}}}, nil); res.Err() != nil {
		t.Errorf("apply over an existing real: %v", res.Err())
	}
	if k.Calls()-before != 2 {
		t.Errorf("add over an existing real made %d calls, want 2 (add, then update)", k.Calls()-before)
	}
}

// TestNetlinkDeadline: a call that does not come back in time fails with
// ErrTimeout, and the next call gets a fresh socket.
func TestNetlinkDeadline(t *testing.T) {
	k, err := OpenNetlink(200*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	start := time.Now()
	err = k.do("a call that hangs", func(h *mobyipvs.Handle) error {
		time.Sleep(2 * time.Second) // as a lost reply would
		return nil
	})
	if !errors.Is(err, ErrTimeout) || time.Since(start) > time.Second {
		t.Fatalf("got %v after %v, want ErrTimeout after 200ms", err, time.Since(start))
	}
	if _, err := k.Services(); err != nil {
		t.Errorf("the call after a timeout: %v", err)
	}
}
