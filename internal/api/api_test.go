package api

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/internal/status"
)

// source is a daemon whose Status blocks while block is open.
type source struct {
	block   chan struct{}
	entered chan struct{}
}

func (s *source) Status() (status.View, error) {
	if s.block != nil {
		s.entered <- struct{}{}
		<-s.block
	}
	return status.View{}, nil
}
func (*source) Explain(string) (status.Explanation, error) { return status.Explanation{}, nil }
func (*source) Health() (bool, string)                     { return true, "" }

// director counts the handovers it was asked for.
type director struct {
	mu        sync.Mutex
	handovers int
}

func (*director) HAStatus() status.HAView { return status.HAView{Role: "active"} }
func (d *director) Handover() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handovers++
	return nil
}

func post(t *testing.T, url, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestChangesNeedTheToken: a handover without the token of api.token_file
// is refused and nothing is handed over; with it, it goes through.
// (Before api.token_file, the first POST handed over: 200.)
func TestChangesNeedTheToken(t *testing.T) {
	d := &director{}
	srv := httptest.NewServer(Handler(&source{}, prometheus.NewRegistry(), Options{HA: d, Token: "s3cret"}))
	defer srv.Close()
	url := srv.URL + "/v1/ha/handover"
	if resp := post(t, url, ""); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("without a token: %s, want 401 with WWW-Authenticate", resp.Status)
	}
	if resp := post(t, url, "guess"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("with another token: %s, want 403", resp.Status)
	}
	if d.handovers != 0 {
		t.Fatalf("%d handovers without the token, want none", d.handovers)
	}
	if resp := post(t, url, "s3cret"); resp.StatusCode != http.StatusOK || d.handovers != 1 {
		t.Errorf("with the token: %s, %d handovers; want 200 and one", resp.Status, d.handovers)
	}
	// Reads need no token.
	resp, err := http.Get(srv.URL + "/v1/ha")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/ha: %v %v", resp, err)
	}

	// Without token_file no change is accepted at all.
	open := httptest.NewServer(Handler(&source{}, prometheus.NewRegistry(), Options{HA: d}))
	defer open.Close()
	for _, token := range []string{"", "s3cret"} {
		if resp := post(t, open.URL+"/v1/ha/handover", token); resp.StatusCode != http.StatusForbidden {
			t.Errorf("no token_file, token %q: %s, want 403", token, resp.Status)
		}
	}
	if d.handovers != 1 {
		t.Errorf("%d handovers, want the one with the token", d.handovers)
	}
}

// TestConcurrencyLimit: with MaxInFlight requests in progress, one more
// is answered 503 at once; once they end, requests are served again.
func TestConcurrencyLimit(t *testing.T) {
	src := &source{block: make(chan struct{}), entered: make(chan struct{})}
	srv := httptest.NewServer(Handler(src, prometheus.NewRegistry(), Options{MaxInFlight: 2}))
	defer srv.Close()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/v1/status")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("a status in flight: %v %v", resp, err)
				return
			}
			resp.Body.Close()
		}()
	}
	<-src.entered
	<-src.entered
	start := time.Now()
	resp, err := http.Get(srv.URL + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || time.Since(start) > 5*time.Second {
		t.Errorf("a third request: %s after %v, want 503 with Retry-After at once", resp.Status, time.Since(start))
	}
	close(src.block)
	wg.Wait()
	src.block = nil
	resp, err = http.Get(srv.URL + "/v1/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the others ended: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestServeTimeouts: the server bounds every phase of a request, and a
// client that never finishes its headers is cut off.
func TestServeTimeouts(t *testing.T) {
	saved := timeouts
	defer func() { timeouts = saved }()
	srv, err := Serve("127.0.0.1:0", Handler(&source{}, prometheus.NewRegistry(), Options{}), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Errorf("server limits %v %v %v %v %d: want each set", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
	srv.Close()

	timeouts.header = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv, err = Serve(addr, Handler(&source{}, prometheus.NewRegistry(), Options{}), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /v1/health HTTP/1.1\r\nHost: x\r\n")); err != nil { // and never the end of the headers
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = bufio.NewReader(c).ReadString('\n')
	if err == nil || time.Since(start) > 4*time.Second {
		t.Errorf("a client slow with its headers: %v after %v, want the connection closed", err, time.Since(start))
	}
}
