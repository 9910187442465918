package nomad_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/nomad"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/internal/testnomad"
)

// TestDeclaredCheckWithoutResultIsPending: Nomad's client registers a
// group's services before it records their checks as pending, so a busy
// client can list an allocation's registration while its check results
// are still empty (a CI run of TestNomadRollingUpdateUnderLoad served a
// joiner 66 ms before its server listened). A proxy in front of the real
// agent answers every check-results read with that empty map while it
// hides them: a service whose job declares a check must then be critical
// with the check pending, one whose job declares none passing; once the
// results show, both serve. Without the job read, web serves at once.
func TestDeclaredCheckWithoutResultIsPending(t *testing.T) {
	c := startCluster(t, testnomad.Options{})
	c.run("web", "web", 2)
	c.noCheck = true
	c.run("plain", "plain", 1)

	target, err := url.Parse(c.agent.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var hide atomic.Bool
	hide.Store(true)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hide.Load() && strings.HasPrefix(r.URL.Path, "/v1/client/allocation/") && strings.HasSuffix(r.URL.Path, "/checks") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{}"))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	s, err := nomad.NewSource(nomad.Options{Address: front.URL, MaxConnections: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	latest := follow(s.Watch(ctx, []string{"web", "plain"}, nil))

	testenv.WaitFor(t, "both instances of web and the one of plain listed", 45*time.Second, func() bool {
		snap, _ := latest.get()
		return len(snap.Instances("web")) == 2 && len(snap.Instances("plain")) == 1
	})
	snap, _ := latest.get()
	for _, in := range snap.Instances("web") {
		if in.Status != catalog.Critical || len(in.Checks) != 1 || in.Checks[0].Name != "alive" || in.Checks[0].Status != "pending" {
			t.Errorf("web instance %s without check results: %s %+v, want critical with check alive pending", in.ID, in.Status, in.Checks)
		}
	}
	if in := snap.Instances("plain")[0]; in.Status != catalog.Passing || len(in.Checks) != 0 {
		t.Errorf("plain instance %s (no check declared): %s %+v, want passing without checks", in.ID, in.Status, in.Checks)
	}
	fetched, err := s.Fetch(ctx, []string{"web"})
	if err != nil {
		t.Fatal(err)
	}
	if allPassing(fetched.Instances("web"), 2) {
		t.Errorf("fetch: web passing without check results")
	}

	hide.Store(false)
	testenv.WaitFor(t, "web passing once its results show", 30*time.Second, func() bool {
		snap, _ := latest.get()
		return allPassing(snap.Instances("web"), 2) && allPassing(snap.Instances("plain"), 1)
	})
}
