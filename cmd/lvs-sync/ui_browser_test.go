package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/net/websocket"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// TestDashboardInChromium runs the built binary, `lvs-sync run -dry-run`,
// against a real Consul agent and opens /ui/ in Debian's headless
// Chromium: the page shows the virtual services and their reals by
// name; after a check turns critical, the real's state on the page goes
// from serving to quiesced without a reload (the page's script refreshed
// it), and the rates column fills in; the table is there without
// JavaScript (Go's client). It keeps a
// screenshot: in $LVS_SYNC_ARTIFACTS, or the test's temporary directory,
// and at $LVS_SYNC_SCREENSHOT when set (`make screenshot`).
func TestDashboardInChromium(t *testing.T) {
	if out, err := exec.Command(filepath.Join(testenv.RepoRoot(t), "scripts", "need.sh"), "chromium", "chromium").CombinedOutput(); err != nil {
		t.Fatalf("no chromium: scripts/need.sh chromium chromium: %v\n%s", err, out)
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal(err)
	}
	agent := testconsul.Start(t)
	reg := func(id, name, addr string, port int) {
		agent.Register(t, &api.AgentServiceRegistration{ID: id, Name: name, Address: addr, Port: port}, api.HealthPassing)
	}
	reg("web-1", "web", "10.1.0.11", 80)
	reg("web-2", "web", "10.1.0.12", 80)
	reg("web-3", "web", "10.1.0.13", 80)
	reg("api-1", "api", "10.1.0.21", 8080)
	reg("api-2", "api", "10.1.0.22", 8080)

	dir := t.TempDir()
	bin := filepath.Join(dir, "lvs-sync")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/lvs-sync/lvs-sync/cmd/lvs-sync").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/lvs-sync: %v\n%s", err, out)
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testconsul.FreePorts(t, 1)[0])
	cfg := writeConfig(t, fmt.Sprintf(`
api {
  address = %q
}
consul {
  address = %q
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  quiescent  = true
}
virtual_service "api" {
  address    = "10.10.10.61:8080"
  forwarding = "masq"
  scheduler  = "rr"
}
`, apiAddr, agent.HTTPAddr))
	logPath := filepath.Join(dir, "run.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "run", "-dry-run", "-config", cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("lvs-sync run: %v", err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("lvs-sync run's log:\n%s", b)
		}
	}()
	url := "http://" + apiAddr + "/ui/"
	testenv.WaitFor(t, "the dashboard lists the five reals", 30*time.Second, func() bool {
		page, err := httpGet(url)
		return err == nil && strings.Count(page, `class="real"`) == 5
	})

	// Without JavaScript: the server's page has the table.
	page, err := httpGet(url)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data-service="web"`, `data-service="api"`, "consul: web", "10.1.0.12:80", "web-2", `class="state serving"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page without JavaScript lacks %q:\n%s", want, page)
		}
	}

	b := startChromium(t, chromium, url)
	// What a person sees: the text of the page as rendered (none while
	// it loads).
	text := func() string { return b.eval(t, `document.body ? document.body.innerText : ""`) }
	state := func(real string) string {
		return b.eval(t, fmt.Sprintf(`(function(){var r=document.querySelector('tr.real[data-real=%q] .state');return r?r.textContent:""})()`, real))
	}
	testenv.WaitFor(t, "chromium shows the services and reals", 15*time.Second, func() bool {
		s := text()
		return strings.Contains(s, "web") && strings.Contains(s, "consul: api") && strings.Contains(s, "10.1.0.22:8080") && state("10.1.0.12:80") == "serving"
	})
	b.eval(t, `window.loadedOnce = "yes"`) // gone if the page reloads
	agent.SetStatus(t, "web-2", api.HealthCritical, "down for the test")
	took := testenv.WaitFor(t, "the page shows web-2 quiesced", 15*time.Second, func() bool { return state("10.1.0.12:80") == "quiesced" })
	t.Logf("the page showed web-2 quiesced %s after its check turned critical", took.Round(time.Millisecond))
	if got := b.eval(t, `String(window.loadedOnce)`); got != "yes" {
		t.Errorf("the page reloaded (window.loadedOnce = %q): the script did not refresh it in place", got)
	}
	if s := text(); !strings.Contains(s, "quiescent") || !strings.Contains(s, "Updated ") {
		t.Errorf("the page does not say the rule behind the weight, or when it was updated:\n%s", s)
	}
	// The in-memory kernel's counters stay at zero: the rates, once two
	// samples are far enough apart, say so.
	took = testenv.WaitFor(t, "the page shows web-1's rate", 15*time.Second, func() bool {
		return b.eval(t, `(function(){var r=document.querySelector('tr.real[data-real="10.1.0.11:80"] .rate');return r?r.textContent:""})()`) == "0.0/s"
	})
	t.Logf("the rates showed %s after web-2 showed quiesced", took.Round(time.Millisecond))
	if st := state("10.1.0.11:80"); st != "serving" {
		t.Errorf("web-1 is %q, want serving", st)
	}
	png := b.screenshot(t)
	artifacts := os.Getenv("LVS_SYNC_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	} else if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(artifacts, "dashboard.png"), os.Getenv("LVS_SYNC_SCREENSHOT")} {
		if p == "" {
			continue
		}
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", p, len(png))
	}
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// browser is a page of a headless Chromium, driven over the DevTools
// protocol: what evaluates script in it and takes its screenshot.
type browser struct {
	ws *websocket.Conn
	id int
}

// startChromium opens url in a headless Chromium of its own (a new
// profile, no network but loopback's) and connects to its page.
func startChromium(t *testing.T, chromium, url string) *browser {
	t.Helper()
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--window-size=1280,720", "--hide-scrollbars",
		"--remote-debugging-port=0", "--remote-allow-origins=*", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its own group: the renderers too
		_ = cmd.Wait()
	})
	// "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
	found := make(chan string, 1)
	var said strings.Builder
	go func() {
		re := regexp.MustCompile(`DevTools listening on ws://([^/]+)/`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			said.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	var host string
	select {
	case h, ok := <-found:
		if !ok {
			t.Fatalf("chromium exited without its DevTools address:\n%s", said.String()) // the reader is done
		}
		host = h
	case <-time.After(20 * time.Second):
		t.Fatalf("chromium did not say its DevTools address within 20s")
	}
	var ws string
	testenv.WaitFor(t, "chromium's page target", 10*time.Second, func() bool {
		body, err := httpGet("http://" + host + "/json/list")
		if err != nil {
			return false
		}
		var targets []struct{ Type, URL, WebSocketDebuggerURL string }
		if json.Unmarshal([]byte(body), &targets) != nil {
			return false
		}
		for _, tg := range targets {
			if tg.Type == "page" && tg.URL == url {
				ws = tg.WebSocketDebuggerURL
				return true
			}
		}
		return false
	})
	conn, err := websocket.Dial(ws, "", "http://127.0.0.1/")
	if err != nil {
		t.Fatalf("connecting to chromium's page: %v", err)
	}
	conn.MaxPayloadBytes = 64 << 20
	t.Cleanup(func() { conn.Close() })
	return &browser{ws: conn}
}

// call sends one DevTools command and returns its result.
func (b *browser) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	b.id++
	if err := websocket.JSON.Send(b.ws, map[string]any{"id": b.id, "method": method, "params": params}); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	_ = b.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(b.ws, &msg); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if msg.ID != b.id {
			continue // an event
		}
		if msg.Error != nil {
			t.Fatalf("%s: %s", method, msg.Error.Message)
		}
		return msg.Result
	}
}

// eval evaluates a script expression in the page and returns its value
// as a string.
func (b *browser) eval(t *testing.T, expr string) string {
	t.Helper()
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(b.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}), &r); err != nil {
		t.Fatal(err)
	}
	if r.Exception != nil {
		t.Fatalf("evaluating %s: %s", expr, r.Exception.Text)
	}
	if r.Result.Value == nil {
		return ""
	}
	return fmt.Sprint(r.Result.Value)
}

// screenshot is the page as Chromium shows it, as PNG.
func (b *browser) screenshot(t *testing.T) []byte {
	t.Helper()
	var r struct{ Data string }
	if err := json.Unmarshal(b.call(t, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}), &r); err != nil {
		t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil || len(png) < 1000 {
		t.Fatalf("the screenshot: %d bytes, %v", len(png), err)
	}
	return png
}
