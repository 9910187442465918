package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/render"
)

func get(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET %s: %s %q\n%s", path, resp.Status, resp.Header.Get("Content-Type"), b)
	}
	return string(b)
}

// TestPageEscapesAndSortsServices: names from Consul reach the page as
// text, never as markup; lvs-sync's services, conflicts and foreign
// services are in tables of their own; a draining real says how long it
// has left; the live part is the same rendering as the page's.
func TestPageEscapesAndSortsServices(t *testing.T) {
	hostile := `<img src=x onerror=alert(1)>`
	deadline := time.Now().Add(20 * time.Second)
	v := status.View{LastSync: time.Now(), Services: []status.ServiceView{
		{Name: "web", Protocol: "tcp", Address: "10.0.0.1:80", ConsulService: "web", Forwarding: "gate", Scheduler: "wlc", Reals: []status.RealView{
			{Address: "10.1.0.1:80", Weight: 10, ActiveConns: 4, InactiveConns: 1, Node: hostile, InstanceID: "web-1", Source: render.SourcePassing, Rule: "passing: weight 10"},
			{Address: "10.1.0.2:80", ActiveConns: 2, Node: "n2", InstanceID: "web-2", Source: render.SourceDraining, DrainDeadline: deadline},
		}},
		{Name: "api", Protocol: "tcp", Address: "10.0.0.1:8080", Conflict: true, Scheduler: "rr"},
		{Protocol: "udp", Address: "10.0.0.9:53", Foreign: true, Scheduler: "sh"},
	}}
	h := Handler(func() (status.View, error) { return v, nil }, hclog.NewNullLogger())
	page := get(t, h, "/")
	if strings.Contains(page, hostile) || !strings.Contains(page, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("the node's name is not escaped:\n%s", page)
	}
	services := section(page, `id="services"`, "</table>")
	for _, want := range []string{"web", "consul: web", "10.1.0.1:80", `class="state serving"`, "passing: weight 10", `class="state draining"`, "web-2", "<td class=\"n\">6</td>"} {
		if !strings.Contains(services, want) {
			t.Errorf("the services table lacks %q:\n%s", want, services)
		}
	}
	if strings.Contains(services, "10.0.0.1:8080") || strings.Contains(services, "10.0.0.9:53") {
		t.Errorf("a conflict or a foreign service is among lvs-sync's:\n%s", services)
	}
	if !strings.Contains(section(page, "<h2>Conflicts</h2>", "</table>"), "10.0.0.1:8080") ||
		!strings.Contains(section(page, "<h2>Foreign services</h2>", "</table>"), "10.0.0.9:53") {
		t.Errorf("conflicts and foreign services are not listed apart:\n%s", page)
	}
	if !strings.Contains(services, "s left") {
		t.Errorf("the draining real does not say how long it has left:\n%s", services)
	}
	for _, external := range []string{`src="http`, `href="http`, `src="//`, `href="//`, "@import"} {
		if strings.Contains(page, external) {
			t.Errorf("the page loads something from elsewhere (%s): it must work offline", external)
		}
	}
	live := get(t, h, "/live")
	if strings.Contains(live, "<script") || !strings.Contains(live, `id="services"`) {
		t.Errorf("the live part:\n%s", live)
	}
}

// section is s from the first start to the first end after it.
func section(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}

// TestPageShowsTheRoleAndTheSessions: with director.ha the page names the
// role; with director.bgp the sessions, and each VIP announced or why not.
func TestPageShowsTheRoleAndTheSessions(t *testing.T) {
	v := status.View{
		HA: &status.HAView{Name: "lb1", Role: "active", Peer: "lb2", PeerRole: "standby", ConsulOK: true},
		BGP: &status.BGPView{
			Neighbors: []status.NeighborView{{Address: "192.0.2.1", ASN: 65000, State: "established", Uptime: 42}},
			VIPs:      []status.VIPView{{Address: "10.0.0.1", Announced: true}, {Address: "10.0.0.2", Reason: "pool empty"}},
		},
		Services: []status.ServiceView{
			{Name: "web", Protocol: "tcp", Address: "10.0.0.1:80", ConsulService: "web"},
			{Name: "api", Protocol: "tcp", Address: "10.0.0.2:80", ConsulService: "api"},
		},
	}
	page := get(t, Handler(func() (status.View, error) { return v, nil }, hclog.NewNullLogger()), "/live")
	ha := section(page, `id="ha"`, "</table>")
	if !strings.Contains(ha, "lb1") || !strings.Contains(ha, `<td class="role">active</td>`) || !strings.Contains(ha, "standby") {
		t.Errorf("the HA table:\n%s", ha)
	}
	bgp := section(page, `id="bgp"`, "</table>")
	if !strings.Contains(bgp, "192.0.2.1") || !strings.Contains(bgp, "established") || !strings.Contains(bgp, "42 s") {
		t.Errorf("the BGP table:\n%s", bgp)
	}
	web := section(page, `data-service="web"`, "</tr>")
	api := section(page, `data-service="api"`, "</tr>")
	if !strings.Contains(web, "<td>announced</td>") || !strings.Contains(api, "not announced: pool empty") {
		t.Errorf("the VIPs' announcements:\n%s\n%s", web, api)
	}
}

// TestPageAllowsNothingFromElsewhere: the page's Content-Security-Policy
// lets it load and connect to nothing but its own listener, so a name
// that got past escaping still could not run or fetch anything.
func TestPageAllowsNothingFromElsewhere(t *testing.T) {
	srv := httptest.NewServer(Handler(func() (status.View, error) { return status.View{}, nil }, hclog.NewNullLogger()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.HasPrefix(csp, "default-src 'none';") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	post, err := http.Post(srv.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %s, want 405: the page changes nothing", post.Status)
	}
}
