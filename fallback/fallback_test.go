package fallback

import (
	"bufio"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	fixed := func() time.Time { return time.Date(2026, 11, 22, 3, 4, 5, 0, time.UTC) }
	tmpl := template.Must(template.New("p").Parse(DefaultPage))
	h := Handler(`shop <script>alert(1)</script>`, tmpl, fixed)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/cart?x=1", nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "30" || res.Header.Get("Cache-Control") != "no-store" ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Errorf("status %d, headers %v", res.StatusCode, res.Header)
	}
	if strings.Contains(string(body), "<script>") || !strings.Contains(string(body), "shop &lt;script&gt;") {
		t.Errorf("service name not escaped:\n%s", body)
	}
	if !strings.Contains(string(body), "Sun, 22 Nov 2026 03:04:05 UTC") {
		t.Errorf("no time on the page:\n%s", body)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("HEAD", "/", nil))
	if rec.Code != 503 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "0" {
		t.Errorf("HEAD: %d, %d bytes, length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}

	custom := template.Must(template.New("c").Parse(`<p>{{.Service}} back at {{.Time}}</p>`))
	rec = httptest.NewRecorder()
	Handler("api", custom, fixed).ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader("x")))
	if got := rec.Body.String(); got != "<p>api back at Sun, 22 Nov 2026 03:04:05 UTC</p>" {
		t.Errorf("custom page: %q", got)
	}
}

func freeAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return netip.MustParseAddrPort(l.Addr().String())
}

func TestServerOverTCP(t *testing.T) {
	s := &Server{HeaderTimeout: 300 * time.Millisecond}
	defer s.Close()
	addr := freeAddr(t)
	if err := s.Update([]Page{{Service: "web", Addr: addr}}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "web is down for maintenance") {
		t.Errorf("GET: %d %s", resp.StatusCode, body)
	}

	// Not HTTP: an answer, then the connection is closed.
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n"))
	if _, err := io.ReadAll(bufio.NewReader(conn)); err != nil {
		t.Errorf("garbage: connection not closed: %v", err)
	}
	conn.Close()

	// Silent: let go after the header timeout, not held.
	conn, err = net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Errorf("silent client: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("silent client held %v", d)
	}
	conn.Close()

	// A new template is taken up; a page that leaves the list stops.
	if err := s.Update([]Page{{Service: "web", Addr: addr, Template: "<p>{{.Service}} soon</p>"}}); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get("http://" + addr.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "<p>web soon</p>" {
		t.Errorf("after update: %q", body)
	}
	if err := s.Update(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		t.Error("page still listening after it left the list")
	}
}
