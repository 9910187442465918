package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/internal/api"
	"github.com/lvs-sync/lvs-sync/internal/status"
)

type fakeDaemon struct{}

func (fakeDaemon) Status() (status.View, error) {
	return status.View{LastSync: time.Now(), Synced: time.Now()}, nil
}
func (fakeDaemon) Explain(string) (status.Explanation, error) {
	return status.Explanation{}, errors.New("none")
}
func (fakeDaemon) Health() (bool, string) { return true, "" }

// fakeHA is a director that is active until it hands over once.
type fakeHA struct{ v status.HAView }

func (f *fakeHA) HAStatus() status.HAView { return f.v }
func (f *fakeHA) Handover() error {
	if f.v.Role != "active" {
		return errors.New("this director is not active")
	}
	f.v.Role, f.v.Epoch, f.v.LockHolder = "standby", 0, f.v.Peer
	return nil
}

func TestHAHandoverAndStatus(t *testing.T) {
	h := &fakeHA{v: status.HAView{Name: "d1", Role: "active", Epoch: 4, LockHolder: "d1", LeaseEpoch: 4, Peer: "d2",
		PeerRole: "standby", PeerHeard: time.Now(), ConsulOK: true, Carrier: true, SyncDaemons: "master+backup", Takeovers: 1,
		LastTakeover: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	srv := httptest.NewServer(api.Handler(fakeDaemon{}, prometheus.NewRegistry(), h))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	var out, errs bytes.Buffer
	if code := run([]string{"status", "-api", addr}, &out, &errs); code != 0 {
		t.Fatalf("status: %d %s", code, errs.String())
	}
	for _, want := range []string{"ha: d1 is active (epoch 4); lock holder d1 (epoch 4); sync daemons master+backup; peer d2 standby",
		"last takeover 2026-01-02T03:04:05Z"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"status", "-json", "-api", addr}, &out, &errs); code != 0 {
		t.Fatal(errs.String())
	}
	var v status.View
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.HA == nil || v.HA.Role != "active" || v.HA.SyncDaemons != "master+backup" {
		t.Fatalf("status -json ha %+v (%v)", v.HA, err)
	}

	out.Reset()
	if code := run([]string{"ha", "handover", "-api", addr}, &out, &errs); code != 0 {
		t.Fatalf("handover: %d %s", code, errs.String())
	}
	if got := out.String(); got != "handed over: d1 is standby; d2 takes over\n" {
		t.Fatalf("handover said %q", got)
	}
	errs.Reset()
	if code := run([]string{"ha", "handover", "-api", addr}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "handover refused: this director is not active") {
		t.Fatalf("second handover: %d %q", code, errs.String())
	}
	errs.Reset()
	if code := run([]string{"ha"}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "Usage: lvs-sync ha handover") {
		t.Fatalf("ha without a subcommand: %d %q", code, errs.String())
	}
}

func TestHAHandoverWithoutHA(t *testing.T) {
	srv := httptest.NewServer(api.Handler(fakeDaemon{}, prometheus.NewRegistry()))
	defer srv.Close()
	var out, errs bytes.Buffer
	if code := run([]string{"ha", "handover", "-api", strings.TrimPrefix(srv.URL, "http://")}, &out, &errs); code != 1 ||
		!strings.Contains(errs.String(), "without director.ha") {
		t.Fatalf("handover without ha: %d %q", code, errs.String())
	}
}
