package ha

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// TestDeregisterGivesUp: a stopping director deregisters from its agent;
// with the agent unreachable (here: it accepts the connection and never
// answers, as a host behind a cut link leaves TCP waiting) the request
// must not hold the process past SIGTERM. A CI run lost a director that
// did not exit within 10 s of it, its log ending at "drained".
func TestDeregisterGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answered
		}
	}()
	conf := api.DefaultConfig()
	conf.Address, conf.Token, conf.TokenFile = ln.Addr().String(), "", ""
	c, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	l := NewConsulLease(c, "lvs-sync/ha/test", hclog.NewNullLogger())
	done := make(chan error, 1)
	go func() { done <- l.Deregister("dir1") }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("deregistering from an agent that never answers: no error")
		}
		t.Logf("gave up: %v", err)
	case <-time.After(deregisterTimeout + 5*time.Second):
		t.Fatalf("Deregister still waiting %v after the agent stopped answering", deregisterTimeout+5*time.Second)
	}
}
