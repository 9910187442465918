package fallback

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzMaintenanceRequest sends arbitrary bytes as a request to a page over
// loopback, then half-closes. The page must answer with one well-formed
// HTTP response and close, or just close. The response is the page's 503,
// or an error net/http writes itself before any handler runs: the 400
// family (a malformed request, 431 for headers past the cap), 501 (a
// transfer encoding it does not know) or 505 (an HTTP version it does not
// speak). Nothing else, and never a hang.
func FuzzMaintenanceRequest(f *testing.F) {
	s := &Server{HeaderTimeout: time.Second}
	f.Cleanup(s.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if err := s.Update([]Page{{Service: "web", Addr: netip.MustParseAddrPort(addr)}}); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: web\r\n\r\n",
		"HEAD /x HTTP/1.0\r\n\r\n",
		"POST /cart HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nabcde",
		"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: web\r\n\r\nGET /2 HTTP/1.1\r\nHost: web\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: web\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"GET / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
		"GET http://evil/ HTTP/1.1\r\nHost: web\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// The page answers or closes well within this; a client that stops
		// sending is let go at the header timeout, 1 s.
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(req); err != nil && !isReset(err) {
			t.Fatalf("write: %v", err)
		}
		_ = conn.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(conn)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("neither answered nor closed in 5s (%d bytes so far: %q)", len(got), got)
		}
		if len(got) == 0 {
			return // closed without an answer
		}
		checkAnswer(t, got)
	})
}

// checkAnswer asserts that b is exactly one well-formed response of the
// kinds FuzzMaintenanceRequest allows.
func checkAnswer(t *testing.T, b []byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(b))
	// As for HEAD, so that the body is left for below: the page answers
	// HEAD with the Content-Length and no body.
	resp, err := http.ReadResponse(r, &http.Request{Method: http.MethodHead})
	if err != nil {
		t.Fatalf("not an HTTP response: %v: %q", err, b)
	}
	body, _ := io.ReadAll(r)
	code := resp.StatusCode
	switch {
	case code == http.StatusServiceUnavailable:
		if resp.Header.Get("Retry-After") != "30" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("503 without Retry-After or Cache-Control: %q", b)
		}
		if resp.ContentLength <= 0 || (len(body) != 0 && int64(len(body)) != resp.ContentLength) {
			t.Fatalf("503 with Content-Length %d and %d bytes after the header (one response, or a HEAD's): %q", resp.ContentLength, len(body), b)
		}
		if len(body) > 0 && !bytes.Contains(body, []byte("web is down for maintenance")) {
			t.Fatalf("503 with another body: %q", body)
		}
	case code >= 400 && code < 500, code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported:
		// net/http's own answer, closed after it: a short text.
		if len(body) > 512 || bytes.Contains(body, []byte("HTTP/1.")) {
			t.Fatalf("status %d followed by more than its message: %q", code, b)
		}
	default:
		t.Fatalf("status %d: %q", code, b)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}
