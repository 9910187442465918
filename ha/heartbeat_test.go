package ha

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Two directors with different keys hear nothing of each other, and say
// why; with the same key they hear each other.
func TestMemberlistKeys(t *testing.T) {
	start := func(name string, key byte, out *lockedBuffer) (*Memberlist, Peer) {
		addr := freePort(t)
		log := hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Info, Output: out})
		ml, err := NewMemberlist(name, addr, bytes.Repeat([]byte{key}, 32), log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ml.Close() })
		return ml, Peer{Name: name, Addr: addr}
	}
	var logA, logB lockedBuffer
	a, pa := start("a", 1, &logA)
	b, pb := start("b", 2, &logB)
	a.SetPeers([]Peer{pb})
	b.SetPeers([]Peer{pa})
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(logB.String(), "cannot be decrypted") {
		_ = a.Send(Heartbeat{From: "a", Role: Active, Epoch: 1})
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logB.String(), "[WARN]  b: the peer's heartbeats cannot be decrypted") {
		t.Fatalf("different keys, no WARN; b's log:\n%s", logB.String())
	}
	select {
	case hb := <-b.Received():
		t.Fatalf("b heard %+v under another key", hb)
	default:
	}

	c, pc := start("c", 1, &logB)
	a.SetPeers([]Peer{pc})
	c.SetPeers([]Peer{pa})
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		_ = a.Send(Heartbeat{From: "a", Role: Active, Epoch: 1})
		select {
		case hb := <-c.Received():
			if hb.From != "a" || hb.Epoch != 1 {
				t.Fatalf("c heard %+v", hb)
			}
			return
		default:
		}
	}
	t.Fatal("c, with a's key, heard nothing from it")
}
