// Package api is lvs-sync's local HTTP API: /v1/status, /v1/explain/NAME,
// /v1/health, /metrics and, for an HA pair, /v1/ha and POST
// /v1/ha/handover. It listens on loopback by default; it has no
// authentication of its own: the one call that changes something, a
// handover, moves the active role to a peer that is ready for it.
package api

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lvs-sync/lvs-sync/internal/status"
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

// Handler serves the API; ha, with director.ha, is the pair's director.
func Handler(src Source, metrics prometheus.Gatherer, ha ...HA) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := src.Status()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		if len(ha) > 0 {
			v := ha[0].HAStatus()
			st.HA = &v
		}
		writeJSON(w, http.StatusOK, st)
	})
	if len(ha) > 0 {
		mux.HandleFunc("GET /v1/ha", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, ha[0].HAStatus())
		})
		mux.HandleFunc("POST /v1/ha/handover", func(w http.ResponseWriter, r *http.Request) {
			if err := ha[0].Handover(); err != nil {
				writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, ha[0].HAStatus())
		})
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
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Serve listens on addr and serves h until the returned server is closed.
func Serve(addr string, h http.Handler, log hclog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api stopped", "error", err)
		}
	}()
	log.Info("serving the api", "address", ln.Addr().String())
	return srv, nil
}
