//go:build vmguest

// These tests run in the VM (see e2e.TestInKernel), as root against the
// kernel's real IPVS.
package ipvsread

import (
	"errors"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// TestNetlinkDeadline: a call that does not come back in time fails with
// ipvs.ErrTimeout, and the next call gets a fresh socket, so that a lost
// reply cannot hang a test.
func TestNetlinkDeadline(t *testing.T) {
	k, err := Open(200*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	start := time.Now()
	err = k.do("a call that hangs", func(h *mobyipvs.Handle) error {
		time.Sleep(2 * time.Second) // as a lost reply would
		return nil
	})
	if !errors.Is(err, ipvs.ErrTimeout) || time.Since(start) > time.Second {
		t.Fatalf("got %v after %v, want ErrTimeout after 200ms", err, time.Since(start))
	}
	if _, err := k.Services(); err != nil {
		t.Errorf("the call after a timeout: %v", err)
	}
}
