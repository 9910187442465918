// Package api is lvs-sync's local HTTP API: /v1/status, /v1/explain/NAME,
// /v1/health, /metrics, the dashboard at /ui/ and, for an HA pair, /v1/ha and POST
// /v1/ha/handover. It listens on loopback by default. Reads are open to
// whoever reaches the listener; a call that changes state (a handover)
// needs the bearer token of api.token_file, and is refused without one.
// The server bounds how long a client may take and how many requests it
// serves at once.
package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/internal/ui"
)

// Source is what the API shows; *daemon.Daemon is one.
type Source interface {
	Status() (status.View, error)
	Explain(name string) (status.Explanation, error)
	Health() (bool, string)
}

// HA is a director of an HA pair; the API shows it and hands over.
type HA interface {
	HAStatus() status.HAView
	// Handover makes this active director hand over to its peer.
	Handover() error
}

// Health is the body of /v1/health.
type Health struct {
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason"`
}

// Options are what the API needs beside its source.
type Options struct {
	// HA, with director.ha, is the pair's director.
	HA HA
	// Token is the bearer token of the calls that change state; empty
	// refuses them all.
	Token string
	// MaxInFlight is how many requests are served at once (default
	// DefaultMaxInFlight); one more is answered 503 at once.
	MaxInFlight int
	// Log is the API's logger; nil logs nothing.
	Log hclog.Logger
}

// DefaultMaxInFlight bounds the requests the API serves at once.
const DefaultMaxInFlight = 16

// Handler serves the API.
func Handler(src Source, metrics prometheus.Gatherer, opts Options) http.Handler {
	var ha []HA
	if opts.HA != nil {
		ha = []HA{opts.HA}
	}
	log := opts.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	changes := func(h http.HandlerFunc) http.HandlerFunc { return authorized(opts.Token, h) }
	mux := http.NewServeMux()
	view := func() (status.View, error) {
		st, err := src.Status()
		if err != nil {
			return st, err
		}
		if len(ha) > 0 {
			v := ha[0].HAStatus()
			st.HA = &v
		}
		return st, nil
	}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := view()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.Handle("GET /ui/", http.StripPrefix("/ui", ui.Handler(view, log.Named("ui"))))
	if len(ha) > 0 {
		mux.HandleFunc("GET /v1/ha", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, ha[0].HAStatus())
		})
		mux.HandleFunc("POST /v1/ha/handover", changes(func(w http.ResponseWriter, r *http.Request) {
			if err := ha[0].Handover(); err != nil {
				writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, ha[0].HAStatus())
		}))
	}
	mux.HandleFunc("GET /v1/explain/{name}", func(w http.ResponseWriter, r *http.Request) {
		ex, err := src.Explain(r.PathValue("name"))
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, ex)
	})
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		ok, reason := src.Health()
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, Health{Healthy: ok, Reason: reason})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	limit := opts.MaxInFlight
	if limit <= 0 {
		limit = DefaultMaxInFlight
	}
	return bounded(limit, mux)
}

// authorized serves h to a request that carries token as its bearer
// token: 401 without one, 403 with another, and 403 for every request
// when no token is set.
func authorized(token string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case token == "":
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "this lvs-sync accepts no change through its api: set api { token_file }"})
		case !ok || got == "":
			w.Header().Set("WWW-Authenticate", `Bearer realm="lvs-sync"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a change needs the token of api.token_file as a bearer token (lvs-sync ha handover -config reads it)"})
		case subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1:
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "the bearer token is not the one of api.token_file"})
		default:
			h(w, r)
		}
	}
}

// bounded serves at most limit requests at once; one more is answered 503
// at once rather than queued, so a client looping on the API cannot pile
// work on the director.
func bounded(limit int, h http.Handler) http.Handler {
	slots := make(chan struct{}, limit)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			h.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "too many requests at once"})
		}
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// timeouts bound a client's time: to send its headers and its request,
// to read the answer, and idle between requests.
var timeouts = struct{ header, read, write, idle time.Duration }{
	header: 5 * time.Second, read: 10 * time.Second, write: 30 * time.Second, idle: 60 * time.Second,
}

// Serve listens on addr and serves h until the returned server is closed.
func Serve(addr string, h http.Handler, log hclog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: timeouts.header, ReadTimeout: timeouts.read,
		WriteTimeout: timeouts.write, IdleTimeout: timeouts.idle, MaxHeaderBytes: 64 << 10}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api stopped", "error", err)
		}
	}()
	log.Info("serving the api", "address", ln.Addr().String())
	return srv, nil
}
