// Package testnomad runs a real Nomad agent in dev mode for tests, joined
// to a test's Consul agent, on free loopback ports, and stops it when the
// test ends.
//
// The binary comes from $LVS_SYNC_NOMAD, else from the cache that
// `make nomad` (scripts/build-tool.sh nomad) fills; a missing binary fails
// the test.
package testnomad

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// Agent is a running dev agent.
type Agent struct {
	Addr    string // http://127.0.0.1:PORT
	Bin     string
	Dir     string
	LogPath string
	// Volumes are the client's host volumes, by name: "lvs-sync", which
	// nomad/lvs-sync.nomad.hcl mounts for its state file, at a directory
	// of the test's.
	Volumes map[string]string
	// Token is the management token when the agent runs with ACLs
	// (Options.ACL), which Get and CLI carry; "" otherwise.
	Token string
}

// Options change how Start sets up the agent.
type Options struct {
	// NetworkInterface is the client's network_interface, whose address
	// the jobs' ports get (NOMAD_IP_*); default "lo".
	NetworkInterface string
	// ACL runs the agent with ACLs on, bootstrapped: Agent.Token is the
	// management token.
	ACL bool
}

// Start runs `nomad agent -dev` with Consul at consulAddr (none when ""), the raw_exec
// driver on, NET_ADMIN allowed to exec, client meta lvs_director and
// lvs_realserver set, and the host volume "lvs-sync", and waits for its
// client to be ready.
func Start(t testing.TB, consulAddr string) *Agent {
	t.Helper()
	return StartWith(t, consulAddr, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, consulAddr string, opts Options) *Agent {
	t.Helper()
	bin := testenv.Tool(t, "nomad")
	dir := t.TempDir()
	ports := testconsul.FreePorts(t, 3)
	a := &Agent{Addr: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), Bin: bin, Dir: dir, LogPath: filepath.Join(dir, "nomad.log"),
		Volumes: map[string]string{"lvs-sync": filepath.Join(dir, "volumes", "lvs-sync")}}
	for _, path := range a.Volumes {
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	iface := opts.NetworkInterface
	if iface == "" {
		iface = "lo"
	}
	// Without Consul (consulAddr ""), jobs register their services in
	// Nomad itself (provider = "nomad").
	var extra string
	if consulAddr != "" {
		extra = fmt.Sprintf("consul {\n  address = %q\n}\n", consulAddr)
	}
	if opts.ACL {
		extra += "acl {\n  enabled = true\n}\n"
	}
	conf := fmt.Sprintf(`
data_dir  = %q
bind_addr = "127.0.0.1"
ports {
  http = %d
  rpc  = %d
  serf = %d
}
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
client {
  enabled           = true
  network_interface = %q
  host_volume "lvs-sync" {
    path      = %q
    read_only = false
  }
  meta {
    lvs_director   = "true"
    lvs_realserver = "true"
  }
  options {
    # This machine sets AWS_CA_BUNDLE, which the cloud fingerprinters trip on.
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}
%s
plugin "raw_exec" {
  config {
    enabled = true
  }
}
plugin "exec" {
  config {
    allow_caps = ["audit_write", "chown", "dac_override", "fowner", "fsetid", "kill", "mknod",
      "net_bind_service", "setfcap", "setgid", "setpcap", "setuid", "sys_chroot", "net_admin"]
  }
}
`, filepath.Join(dir, "data"), ports[0], ports[1], ports[2], iface, a.Volumes["lvs-sync"], extra)
	confPath := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(a.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "-dev", "-config", confPath)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nomad: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logFile.Close()
		unmountUnder(dir) // the exec driver's mounts (secrets, dev, proc) outlive the agent
		if t.Failed() {
			if b, err := os.ReadFile(a.LogPath); err == nil {
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("nomad log (end):\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(a.LogPath)
			t.Fatalf("nomad exited during start:\n%s", b)
		default:
		}
		if opts.ACL && a.Token == "" {
			a.Token = bootstrap(a.Addr)
		}
		var nodes []struct{ Status string }
		if (!opts.ACL || a.Token != "") && a.Get("/v1/nodes", &nodes) == nil && len(nodes) == 1 && nodes[0].Status == "ready" {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("nomad client not ready in 90s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// bootstrap asks for the management token; "" until the agent gives it.
func bootstrap(addr string) string {
	resp, err := http.Post(addr+"/v1/acl/bootstrap", "application/json", nil)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var tok struct{ SecretID string }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&tok) != nil {
		return ""
	}
	return tok.SecretID
}

// Get decodes a GET of the agent's HTTP API into v.
func (a *Agent) Get(path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, a.Addr+path, nil)
	if err != nil {
		return err
	}
	if a.Token != "" {
		req.Header.Set("X-Nomad-Token", a.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// CLI runs the nomad command against the agent and returns its exit code
// and combined output.
func (a *Agent) CLI(t testing.TB, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(a.Bin, args...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+a.Addr, "TMPDIR="+filepath.Join(a.Dir, "tmp"))
	if a.Token != "" {
		cmd.Env = append(cmd.Env, "NOMAD_TOKEN="+a.Token)
	}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("nomad %s: %v", strings.Join(args, " "), err)
	}
	return 0, string(out)
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			points = append(points, f[1])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

// HostInterface returns the name and IPv4 address of an interface that is
// up and not loopback, for a client whose jobs' addresses must differ from
// 127.0.0.1; it fails the test when the machine has none.
func HostInterface(t testing.TB) (string, netip.Addr) {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() {
				return ifc.Name, p.Addr()
			}
		}
	}
	t.Fatal("no interface that is up, not loopback, with an IPv4 address: the job test needs one for its client")
	return "", netip.Addr{}
}
