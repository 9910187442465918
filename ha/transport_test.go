package ha

import (
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// TestTransportShutdownWhileHeard: the heartbeat's transport shuts down
// while packets keep coming in, as a stopping director's does while its
// peer still sends heartbeats every 50 ms. memberlist's UDP listener
// hands each packet on with a send that does not look at shutdown, and
// NetTransport.Shutdown waits for it: stopping the forwarding first left
// it blocked, and Shutdown (so lvs-sync) never returned (CI, TestHAConsulLoss
// in the VM: SIGTERM, "drained", then nothing; the stacks showed
// udpListen in a chan send and Shutdown in a WaitGroup wait). It fails
// 3 of 3 without the fix.
func TestTransportShutdownWhileHeard(t *testing.T) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0})
	if err != nil {
		t.Fatal(err)
	}
	tr := newPeerTransport(nt, func(netip.AddrPort, bool) bool { return true }, hclog.NewNullLogger())
	// memberlist reads the transport's packets until after its Shutdown
	// returned; so does this test.
	stop := make(chan struct{})
	var seen atomic.Int64
	defer close(stop)
	go func() {
		for {
			select {
			case <-tr.PacketCh():
				seen.Add(1)
			case <-stop:
				return
			}
		}
	}()
	conn, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sending := make(chan struct{})
	go func() { // packets back to back until the test ends
		defer close(sending)
		for {
			select {
			case <-stop:
				return
			default:
				_, _ = conn.Write([]byte("heartbeat"))
			}
		}
	}()
	for seen.Load() < 100 { // packets under way before the shutdown
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the transport's Shutdown did not return within 10s while packets came in")
	}
}
