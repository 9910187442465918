package daemon

import (
	"context"
	"testing"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// tokenWatches is a source that carries a token, as consul.Source does.
type tokenWatches struct {
	watches
	token string
}

func (w *tokenWatches) Token() string { return w.token }

// TestTokenGoesWithTheRunningSource: Token, which director.ha's calls
// ask, is the token of the source the running config is watched
// through: a reload's new token only once the reload took over.
func TestTokenGoesWithTheRunningSource(t *testing.T) {
	h := newHarness(t, gateConfig(""), ipvstest.New(ipvs.State{}))
	if got := h.d.Token(); got != "" {
		t.Fatalf("token %q of a source without one", got)
	}
	h.snapshot(web1(catalog.Passing))
	newTok := &tokenWatches{token: "new"}
	h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, gateConfig("")), src: newTok, trigger: "test"}, h.clock.Now())
	if got := h.d.Token(); got != "" {
		t.Fatalf("a reload not yet taken over gave the token %q", got)
	}
	h.l.switchTo(catalog.Snapshot{Services: map[string]*catalog.Service{"web": {Name: "web", Instances: []*catalog.Instance{web1(catalog.Passing)}}}}, h.clock.Now())
	if got := h.d.Token(); got != "new" {
		t.Fatalf("after the reload took over the token is %q, want %q", got, "new")
	}
}
