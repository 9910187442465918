// Package ui is the dashboard at /ui/ on the local API listener: one page
// of the status view (virtual services, their reals, the HA role or the
// BGP sessions, foreign services and conflicts apart), rendered on the
// server with html/template so the table reads without JavaScript and
// every name from Consul or the kernel is escaped. A small script
// replaces the live part every 2 s with the same template's rendering
// (GET /ui/live), so there is one rendering, not one in Go and one in
// JavaScript. Rates come from the kernel's counters in the view, sampled
// by the page's own requests (rates.go). Everything is embedded: the
// page loads nothing else and works offline. Nothing on it changes state.
package ui

import (
	"bytes"
	"embed"
	"html/template"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/internal/status"
)

//go:embed page.html.tmpl
var files embed.FS

var page = template.Must(template.New("page.html.tmpl").Funcs(template.FuncMap{
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
}).ParseFS(files, "page.html.tmpl"))

// Refresh is how often the page's script asks for the live part.
const Refresh = 2 * time.Second

// Handler serves the page at / and its live part at /live, under
// whatever prefix the caller strips (the API mounts it at /ui/); view is
// the status view as /v1/status answers it, the pair's role included.
func Handler(view func() (status.View, error), log hclog.Logger) http.Handler {
	mux := http.NewServeMux()
	traffic := &rates{}
	serve := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			v, err := view()
			now := time.Now()
			p := Build(v, now, traffic.observe(v, now))
			if err != nil {
				p.Error = err.Error()
			}
			var b bytes.Buffer
			if err := page.ExecuteTemplate(&b, name, p); err != nil {
				log.Error("rendering the dashboard failed", "template", name, "error", err)
				http.Error(w, "rendering the dashboard failed", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			// Only the page's own inline script and style: nothing is
			// loaded from elsewhere, and no name from Consul can run.
			w.Header().Set("Content-Security-Policy", "default-src 'none'; connect-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
			_, _ = w.Write(b.Bytes())
		}
	}
	mux.HandleFunc("GET /{$}", serve("page"))
	mux.HandleFunc("GET /live", serve("live"))
	return mux
}

// Page is what the template shows.
type Page struct {
	Now       time.Time
	Error     string
	View      status.View
	Services  []Service
	Conflicts []status.ServiceView
	Foreign   []status.ServiceView
	// RateWindow is how far back a rate looks, at most.
	RateWindow time.Duration
	RefreshMS  int64
}

// Service is one of lvs-sync's virtual services.
type Service struct {
	status.ServiceView
	// Catalog is the service's catalog service, "consul: web" or
	// "nomad: web".
	Catalog                   string
	ActiveConns, InactiveConn int
	// Rate is the service's traffic, "" while not yet measured (Rates).
	Rate  Rates
	Reals []Real
	// Announced is the VIP's BGP announcement, for a bgp director: "" when
	// not one, else "announced" or why not.
	Announced string
}

// Real is one real of a service, with its state in the words of the
// lvs_sync_reals metric and the rule behind its weight as explain says it.
type Real struct {
	status.RealView
	State string
	Rule  string
	Rate  Rates
	// TimeLeft is how long a draining real may still drain.
	TimeLeft string
}

// Rates is a rate as the page shows it; all "" while not measured yet.
type Rates struct{ Conns, In, Out string }

func shown(r Rate, ok bool) Rates {
	if !ok {
		return Rates{}
	}
	return Rates{Conns: perSecond(r.Conns, ""), In: perSecond(r.InBytes, "B"), Out: perSecond(r.OutBytes, "B")}
}

// Build is the page of a status view at now; rate is the rate of a
// counter (rates.observe), false when not known.
func Build(v status.View, now time.Time, rate func(key string) (Rate, bool)) Page {
	p := Page{Now: now, View: v, RateWindow: rateWindow, RefreshMS: Refresh.Milliseconds()}
	announced := map[string]string{}
	if v.BGP != nil {
		for _, a := range v.BGP.VIPs {
			announced[a.Address] = "announced"
			if !a.Announced {
				announced[a.Address] = "not announced: " + a.Reason
			}
		}
	}
	for _, s := range v.Services {
		switch {
		case s.Foreign:
			p.Foreign = append(p.Foreign, s)
			continue
		case s.Conflict:
			p.Conflicts = append(p.Conflicts, s)
			continue
		}
		svc := Service{ServiceView: s, Rate: shown(rate(serviceKey(s)))}
		switch {
		case s.ConsulService != "":
			svc.Catalog = "consul: " + s.ConsulService
		case s.NomadService != "":
			svc.Catalog = "nomad: " + s.NomadService
		}
		if v.BGP != nil {
			svc.Announced = announced[vipOf(s)]
			if svc.Announced == "" {
				svc.Announced = "not announced"
			}
		}
		for _, r := range s.Reals {
			svc.ActiveConns += r.ActiveConns
			svc.InactiveConn += r.InactiveConns
			rv := Real{RealView: r, State: status.State(r.Source, r.Weight), Rule: r.Rule, Rate: shown(rate(realKey(s, r)))}
			if rv.Rule == "" {
				rv.Rule = string(r.Source)
			}
			if !r.DrainDeadline.IsZero() {
				rv.TimeLeft = max(r.DrainDeadline.Sub(now), 0).Round(time.Second).String()
			}
			svc.Reals = append(svc.Reals, rv)
		}
		p.Services = append(p.Services, svc)
	}
	return p
}

// vipOf is a service's VIP without its port, as BGP announces it; ""
// for a firewall mark.
func vipOf(s status.ServiceView) string {
	host, _, err := net.SplitHostPort(s.Address)
	if err != nil {
		return ""
	}
	return host
}
