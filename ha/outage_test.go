package ha

import (
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// TestPairConsulRestart, issue 18 item 10: Consul as production runs it (a
// server with its state on disk) stopped for 5 s and started again under
// a settled pair. A Consul outage alone changes nothing: the same active
// throughout, never two, and the lease renewed again once Consul is back.
func TestPairConsulRestart(t *testing.T) {
	agent := testconsul.StartServer(t)
	const key = "lvs-sync/ha/test-consul-restart"
	w, dl := startDirectors(t, agent, key, pairOptions{})
	active, standby := settled(t, [2]*director{dl[0], dl[1]})
	epoch := active.r.State().Epoch

	// Watch the roles every 5 ms through the outage and 5 s after it.
	moved := make(chan string, 1)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if a, s := active.r.State(), standby.r.State(); a.Role != "active" || a.Epoch != epoch || s.Role != "standby" {
				select {
				case moved <- "active " + a.Role + " at epoch " + itoa(a.Epoch) + ", standby " + s.Role + "; last step-down " + a.LastStepDown:
				default:
				}
				return
			}
		}
	}()
	agent.Restart(t, 5*time.Second)
	back := time.Now()
	_, renewedAt := leaseNow(t, agent.Client, key)
	renewed := waitFor(10*time.Second, func() bool { _, i := leaseNow(t, agent.Client, key); return i > renewedAt })
	for time.Since(back) < 5*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	select {
	case why := <-moved:
		t.Fatalf("a Consul restart moved the active: %s", why)
	default:
	}
	if !renewed {
		t.Fatalf("no renewal of the lease within 10s of Consul's return: %+v", active.r.State())
	}
	w.check(t)
}

func itoa(n uint64) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}
