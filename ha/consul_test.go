package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// kvReply is one scripted answer of the fake agent's KV endpoint: a
// lease at index, or a failure.
type kvReply struct {
	index uint64
	fail  bool
}

// TestWatchFollowsTheLease drives ConsulLease.Watch through a fake
// agent, answer by answer: every answer observed (a wait that ran out
// too), a failed read observed as an error and logged once per episode,
// the read after it asked from index 0, and an index that went back
// observed Fresh, after a failure as after a wait.
func TestWatchFollowsTheLease(t *testing.T) {
	asked := make(chan string)
	replies := make(chan kvReply)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- r.URL.Query().Get("index"):
		case <-r.Context().Done():
			return
		}
		var rep kvReply
		select {
		case rep = <-replies:
		case <-r.Context().Done():
			return
		}
		if rep.fail {
			http.Error(w, "agent unwell", http.StatusInternalServerError)
			return
		}
		value, _ := json.Marshal(Lease{Holder: "a", Epoch: rep.index})
		w.Header().Set("X-Consul-Index", fmt.Sprint(rep.index))
		_ = json.NewEncoder(w).Encode(api.KVPairs{{Key: "k", Value: value, ModifyIndex: rep.index}})
	}))
	defer srv.Close()
	c, err := api.NewClient(&api.Config{Address: srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	l := NewConsulLease(c, "k", hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: &logs}))
	l.Retry = time.Millisecond

	type seen struct {
		o   Observation
		err bool
	}
	observed := make(chan seen, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Watch(ctx, func(o Observation, err error) { observed <- seen{o, err != nil} })
	}()
	defer func() {
		cancel()
		<-done
	}()

	step := func(wait string, rep kvReply, want seen) {
		t.Helper()
		select {
		case got := <-asked:
			if got != wait {
				t.Fatalf("read asked with index %q, want %q", got, wait)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no read (index %q) in 5s", wait)
		}
		replies <- rep
		select {
		case got := <-observed:
			if got != want {
				t.Fatalf("observed %+v, want %+v", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing observed in 5s, want %+v", want)
		}
	}
	lease := func(index uint64, fresh bool) seen {
		return seen{o: Observation{Present: true, Lease: Lease{Holder: "a", Epoch: index}, Index: index, Fresh: fresh}}
	}
	failed := seen{err: true}

	step("", kvReply{index: 10}, lease(10, false))
	step("10", kvReply{index: 11}, lease(11, false))
	step("11", kvReply{index: 11}, lease(11, false)) // a wait that ran out: observed all the same
	step("11", kvReply{fail: true}, failed)
	step("", kvReply{fail: true}, failed)          // asked from 0 after a failure
	step("", kvReply{index: 12}, lease(12, false)) // answers at once
	step("12", kvReply{index: 5}, lease(5, true))  // a snapshot restored
	step("", kvReply{index: 5}, lease(5, false))   // the watch started over
	step("5", kvReply{fail: true}, failed)         // a second episode
	step("", kvReply{index: 3}, lease(3, true))    // restored during the outage: still fresh
	step("", kvReply{index: 4}, lease(4, false))   // started over

	for line, want := range map[string]int{
		"[WARN]  cannot read the lease":                              2, // once per episode
		"[INFO]  lease readable again":                               2,
		"[WARN]  lease index went back; taking the key as it is now": 2,
	} {
		if got := strings.Count(logs.String(), line); got != want {
			t.Errorf("%q logged %d times, want %d:\n%s", line, got, want, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "index=5 was=12") {
		t.Errorf("the went-back line names neither index:\n%s", logs.String())
	}
}
