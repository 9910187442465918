// Package fallback serves lvs-sync's local maintenance page: the real
// server of last resort of a virtual service with fallback = "local", when
// no instance can take traffic.
//
// IPVS delivers to a real whose address is local to the director with the
// packet's destination unchanged, VIP:port, so the page listens on VIP:port
// itself. It listens with IP_FREEBIND, before the VIP is on its link, and
// only sees traffic when IPVS hands it over: while real servers are up,
// IPVS forwards every packet for the VIP before any socket sees it.
//
// The page must never hurt the director it runs on: headers are capped at
// MaxHeaderBytes, at most MaxConns connections per page are served at once
// (the next ones get a short 503 and are closed), keep-alive is off, and
// every phase has a timeout. A page whose address cannot be bound is
// reported by Update and by Serving, so that its local real is not used.
//
// It imports only the standard library, go-hclog and x/sys/unix.
package fallback

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// DefaultPage is the built-in maintenance page.
const DefaultPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Service}} is down for maintenance</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0; min-height: 100vh; display: grid; place-items: center; background: #f6f7f9; color: #1f2328; }
main { max-width: 34rem; padding: 2rem; text-align: center; }
h1 { font-size: 1.6rem; margin-bottom: .5rem; }
p { color: #57606a; line-height: 1.5; }
</style>
</head>
<body>
<main>
<h1>{{.Service}} is down for maintenance</h1>
<p>We are working on it and will be back shortly. Please try again in a few minutes.</p>
<p><small>{{.Time}}</small></p>
</main>
</body>
</html>
`

// RetryAfter is the Retry-After a client is given, in seconds.
const RetryAfter = 30

const (
	// MaxHeaderBytes caps a request's line and headers (net/http reads up
	// to 4 KiB more before it refuses with 431).
	MaxHeaderBytes = 8 << 10
	// MaxConns is the default cap of connections served at once, per page.
	MaxConns = 256
	// DefaultHeaderTimeout lets go a client that does not send its request.
	DefaultHeaderTimeout = 5 * time.Second
)

// Page is the maintenance page of one virtual service.
type Page struct {
	// Service is the virtual service's name, shown on the page.
	Service string
	// Addr is where IPVS delivers to it: the VIP and virtual port.
	Addr netip.AddrPort
	// Template is an html/template; empty for DefaultPage.
	Template string
}

// Data is what a page template can use.
type Data struct {
	Service string
	Time    string
}

// Handler answers every request with 503 and the page.
func Handler(service string, tmpl *template.Template, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body bytes.Buffer
		if err := tmpl.Execute(&body, Data{Service: service, Time: now().UTC().Format(time.RFC1123)}); err != nil {
			body.Reset()
			fmt.Fprintf(&body, "%s is down for maintenance.\n", template.HTMLEscapeString(service))
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Retry-After", fmt.Sprint(RetryAfter))
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", fmt.Sprint(body.Len()))
		w.WriteHeader(http.StatusServiceUnavailable)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body.Bytes())
		}
	})
}

// Server runs the pages of all virtual services with a local fallback.
type Server struct {
	Log hclog.Logger
	// HeaderTimeout lets go a client that sends no whole request header
	// (default DefaultHeaderTimeout); trickling bytes does not extend it.
	HeaderTimeout time.Duration
	// MaxConns caps the connections served at once, per page (default
	// MaxConns).
	MaxConns int

	mu      sync.Mutex
	running map[netip.AddrPort]*listener
}

type listener struct {
	page Page
	srv  *http.Server
	ln   *capListener
	dead atomic.Bool // Serve returned on its own
}

// Serving reports whether the page at addr is being served: false for an
// address Update could not bind, or whose server stopped. A local
// fallback real must only be rendered where this is true.
func (s *Server) Serving(addr netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.running[addr]
	return ok && !l.dead.Load()
}

// Update makes the server listen for exactly these pages: new addresses
// start, gone ones stop, and a changed template is taken up. The error
// names every page that could not start (a bad template, an address that
// cannot be bound); those are not Serving, and the next Update tries them
// again.
func (s *Server) Update(pages []Page) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if s.running == nil {
		s.running = map[netip.AddrPort]*listener{}
	}
	want := map[netip.AddrPort]Page{}
	for _, p := range pages {
		want[p.Addr] = p
	}
	for addr, l := range s.running {
		if p, ok := want[addr]; !ok || p != l.page || l.dead.Load() {
			_ = l.srv.Close()
			delete(s.running, addr)
			if !ok {
				log.Info("stopped maintenance page", "address", addr, "virtual_service", l.page.Service)
			}
		}
	}
	var errs []error
	for addr, p := range want {
		if _, ok := s.running[addr]; ok {
			continue
		}
		src := p.Template
		if src == "" {
			src = DefaultPage
		}
		tmpl, err := template.New(p.Service).Parse(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("maintenance page of %s: %w", p.Service, err))
			continue
		}
		bound, err := Listen(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("maintenance page of %s: not served: %w", p.Service, err))
			continue
		}
		l := &listener{page: p, ln: newCapListener(bound, cmp.Or(s.MaxConns, MaxConns), p.Service)}
		l.srv = &http.Server{
			Handler:           Handler(p.Service, tmpl, time.Now),
			ReadHeaderTimeout: cmp.Or(s.HeaderTimeout, DefaultHeaderTimeout), // a client that says nothing is let go
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       10 * time.Second,
			MaxHeaderBytes:    MaxHeaderBytes,
			// "OPTIONS *" too gets the 503, not net/http's own 200: a
			// monitor pinging with it must not see a service that is down
			// as up (found by FuzzMaintenanceRequest).
			DisableGeneralOptionsHandler: true,
			ErrorLog:                     log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
		}
		// One answer per connection: a slot is not held by an idle client.
		l.srv.SetKeepAlivesEnabled(false)
		go func() {
			if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				l.dead.Store(true)
				log.Error("maintenance page stopped", "address", addr, "error", err)
			}
		}()
		s.running[addr] = l
		log.Info("serving maintenance page", "address", addr, "virtual_service", p.Service)
	}
	return errors.Join(errs...)
}

// Close stops every page, letting requests in flight finish for a while.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for addr, l := range s.running {
		_ = l.srv.Shutdown(ctx)
		delete(s.running, addr)
	}
}

// Listen listens on addr with IP_FREEBIND, so that it works before the
// address is on any link.
func Listen(addr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if addr.Addr().Is6() {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	network := "tcp4"
	if addr.Addr().Is6() {
		network = "tcp6"
	}
	return lc.Listen(context.Background(), network, addr.String())
}
