package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// fakeHA is a director that is active until it hands over once; it
// counts the handovers it was asked for.
type fakeHA struct {
	v     status.HAView
	asked int
}

func (f *fakeHA) HAStatus() status.HAView { return f.v }
func (f *fakeHA) Handover() error {
	f.asked++
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
	srv := httptest.NewServer(api.Handler(fakeDaemon{}, prometheus.NewRegistry(), api.Options{HA: h, Token: "s3cret"}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	// The config names the API and its token, as on the director.
	dir := t.TempDir()
	tokenFile, cfgFile := filepath.Join(dir, "api.token"), filepath.Join(dir, "lvs.hcl")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("api {\n  address    = %q\n  token_file = %q\n}\n", addr, tokenFile)), 0o644); err != nil {
		t.Fatal(err)
	}

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

	// Without the config there is no token: refused, nothing handed over.
	out.Reset()
	if code := run([]string{"ha", "handover", "-api", addr}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "handover refused: a change needs the token of api.token_file") {
		t.Fatalf("handover without the token: %d %q", code, errs.String())
	}
	if h.asked != 0 || h.v.Role != "active" {
		t.Fatalf("a handover without the token reached the director (%d asked, role %s)", h.asked, h.v.Role)
	}
	errs.Reset()
	if code := run([]string{"ha", "handover", "-config", cfgFile}, &out, &errs); code != 0 {
		t.Fatalf("handover: %d %s", code, errs.String())
	}
	if got := out.String(); got != "handed over: d1 is standby; d2 takes over\n" || h.asked != 1 {
		t.Fatalf("handover said %q, the director was asked %d times; want once", got, h.asked)
	}
	errs.Reset()
	if code := run([]string{"ha", "handover", "-config", cfgFile}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "handover refused: this director is not active") {
		t.Fatalf("second handover: %d %q", code, errs.String())
	}
	if h.asked != 2 || h.v.Role != "standby" {
		t.Fatalf("after the refused second handover: asked %d times, role %s; want 2, standby", h.asked, h.v.Role)
	}
	errs.Reset()
	if code := run([]string{"ha"}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "Usage: lvs-sync ha handover") {
		t.Fatalf("ha without a subcommand: %d %q", code, errs.String())
	}
}

func TestHAHandoverWithoutHA(t *testing.T) {
	srv := httptest.NewServer(api.Handler(fakeDaemon{}, prometheus.NewRegistry(), api.Options{}))
	defer srv.Close()
	var out, errs bytes.Buffer
	if code := run([]string{"ha", "handover", "-api", strings.TrimPrefix(srv.URL, "http://")}, &out, &errs); code != 1 ||
		!strings.Contains(errs.String(), "without director.ha") {
		t.Fatalf("handover without ha: %d %q", code, errs.String())
	}
}

// A director whose lease writes Consul refuses says so in status and
// /v1/ha.
func TestHAStatusLeaseRefused(t *testing.T) {
	refusal := `writing lease lvs-sync/ha/edge: Permission denied (the token needs key:write on lvs-sync/ha/edge)`
	h := &fakeHA{v: status.HAView{Name: "d1", Role: "standby", ConsulOK: true, Carrier: true, SyncDaemons: "backup", LeaseError: refusal}}
	srv := httptest.NewServer(api.Handler(fakeDaemon{}, prometheus.NewRegistry(), api.Options{HA: h}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var out, errs bytes.Buffer
	if code := run([]string{"status", "-api", addr}, &out, &errs); code != 0 {
		t.Fatalf("status: %d %s", code, errs.String())
	}
	if want := "; lease writes refused: " + refusal; !strings.Contains(out.String(), want) {
		t.Fatalf("status lacks %q:\n%s", want, out.String())
	}
	resp, err := srv.Client().Get(srv.URL + "/v1/ha")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v status.HAView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.LeaseError != refusal {
		t.Fatalf("/v1/ha lease_error %q (%v)", v.LeaseError, err)
	}
}

// A director or peer that could not serve says so in status.
func TestHAStatusUnready(t *testing.T) {
	h := &fakeHA{v: status.HAView{Name: "d1", Role: "active", Epoch: 2, Peer: "d2", PeerRole: "standby", PeerHeard: time.Now(),
		ConsulOK: true, Carrier: true, SyncDaemons: "master+backup", PeerUnready: "no sync applied yet"}}
	srv := httptest.NewServer(api.Handler(fakeDaemon{}, prometheus.NewRegistry(), api.Options{HA: h}))
	defer srv.Close()
	var out, errs bytes.Buffer
	if code := run([]string{"status", "-api", strings.TrimPrefix(srv.URL, "http://")}, &out, &errs); code != 0 {
		t.Fatalf("status: %d %s", code, errs.String())
	}
	if want := "; peer not ready to serve: no sync applied yet"; !strings.Contains(out.String(), want) {
		t.Fatalf("status lacks %q:\n%s", want, out.String())
	}
}
