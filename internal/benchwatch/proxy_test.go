package benchwatch

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProxyCounts sends known traffic through the proxy: requests by path,
// 429s, bytes both ways and the most connections at once must add up.
func TestProxyCounts(t *testing.T) {
	release := make(chan struct{})
	body := strings.Repeat("x", 100000) + "\nHTTP/1.1 429 inside a body, at a line start\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/slow":
			<-release
		case r.URL.Path == "/busy":
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()
	p, err := NewProxy(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 3}}
	get := func(path string) int {
		t.Helper()
		resp, err := c.Get("http://" + p.Addr + path)
		if err != nil {
			t.Error(err)
			return 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && string(b) != body {
			t.Errorf("%s: %d bytes back, want %d", path, len(b), len(body))
		}
		return resp.StatusCode
	}

	var wg sync.WaitGroup
	for range 3 { // three held at once: three connections
		wg.Go(func() { get("/slow") })
	}
	for p.Counts().Open < 3 {
		select {
		case <-t.Context().Done():
			return
		default:
		}
	}
	close(release)
	wg.Wait()
	for i := range 5 {
		get("/v1/health/service/svc" + strings.Repeat("1", i) + "?index=3")
		get("/v1/catalog/node-services/node-" + strings.Repeat("1", i))
	}
	if code := get("/busy"); code != http.StatusTooManyRequests {
		t.Errorf("/busy answered %d", code)
	}
	c.CloseIdleConnections()

	// The proxy parses a copy of each stream beside forwarding it, so a
	// count may land just after its answer reached the client: wait for
	// the last request and the 429 to be counted, then compare everything.
	got := p.Counts()
	for deadline := time.Now().Add(10 * time.Second); got.Requests < 14 || got.TooMany < 1; got = p.Counts() {
		if time.Now().After(deadline) {
			break // compared below, and reported
		}
		time.Sleep(time.Millisecond)
	}
	want := map[string]int64{"GET /slow": 3, "GET /v1/health/service/*": 5, "GET /v1/catalog/node-services/*": 5, "GET /busy": 1}
	if got.Requests != 14 || len(got.ByPath) != len(want) || got.Most != 3 || got.Conns != 3 || got.TooMany != 1 {
		t.Errorf("requests %d by path %v, most %d, conns %d, 429s %d; want 14 %v, 3, 3, 1",
			got.Requests, got.ByPath, got.Most, got.Conns, got.TooMany, want)
	}
	for path, n := range want {
		if got.ByPath[path] != n {
			t.Errorf("%s: %d requests, want %d", path, got.ByPath[path], n)
		}
	}
	if got.BytesDown < 8*int64(len(body)) || got.BytesUp < 9*int64(len("GET / HTTP/1.1\r\n")) {
		t.Errorf("bytes down %d, up %d: less than the bodies and request lines sent", got.BytesDown, got.BytesUp)
	}
	if d := got.Sub(got); d.Requests != 0 || d.BytesDown != 0 || len(d.ByPath) != 0 {
		t.Errorf("counts minus themselves: %+v", d)
	}
}
