// Package testconsul runs a real Consul agent in dev mode for tests, on
// free loopback ports, and stops it when the test ends.
//
// The binary comes from testenv.Tool: $LVS_SYNC_CONSUL, else the cache
// that `make consul` fills. A missing binary fails the test loudly: the
// suite never skips the real agent.
package testconsul

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// Agent is a running dev agent.
type Agent struct {
	// HTTPAddr is the agent's HTTP API, "127.0.0.1:PORT".
	HTTPAddr string
	// NodeName is the agent's node.
	NodeName string
	Client   *api.Client
	LogPath  string
	stop     func()
	run      func() error    // starts the agent's process (again)
	mu       sync.Mutex      // one restart at a time
	done     <-chan struct{} // closed when the process has exited
	acls     bool
}

// Stop stops the agent now (it is stopped at the end of the test anyway).
func (a *Agent) Stop() { a.stop() }

// Start runs `consul agent -dev` bound to 127.0.0.1 and waits for it to
// elect itself leader. The agent is stopped when the test ends.
func Start(t testing.TB) *Agent {
	t.Helper()
	return start(t, "")
}

// RootToken is the management token of an agent started with ACLs.
const RootToken = "3a1b5c8e-0000-4000-8000-00000000root"

// StartWithACLs runs a dev agent with ACLs on and default_policy "deny",
// as production agents run: its Client carries RootToken, and Token
// makes tokens of narrower policies.
func StartWithACLs(t testing.TB) *Agent {
	t.Helper()
	return start(t, `acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = false
  tokens {
    initial_management = "`+RootToken+`"
    agent              = "`+RootToken+`"
  }
}`)
}

// Token makes a policy of the given rules and a token of it, and returns
// the token's secret and the policy's ID (to change its rules later).
func (a *Agent) Token(t testing.TB, name, rules string) (secret, policyID string) {
	t.Helper()
	p, _, err := a.Client.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
	if err != nil {
		t.Fatalf("creating acl policy %s: %v", name, err)
	}
	tok, _, err := a.Client.ACL().TokenCreate(&api.ACLToken{Description: name, Policies: []*api.ACLTokenPolicyLink{{ID: p.ID}}}, nil)
	if err != nil {
		t.Fatalf("creating acl token %s: %v", name, err)
	}
	return tok.SecretID, p.ID
}

// SetRules replaces the rules of a policy Token made.
func (a *Agent) SetRules(t testing.TB, policyID, name, rules string) {
	t.Helper()
	if _, _, err := a.Client.ACL().PolicyUpdate(&api.ACLPolicy{ID: policyID, Name: name, Rules: rules}, nil); err != nil {
		t.Fatalf("updating acl policy %s: %v", name, err)
	}
}

func start(t testing.TB, hcl string) *Agent { return launch(t, hcl, true) }

// StartServer runs a one-server Consul as production runs it, not -dev:
// its state (the catalog, KV, the raft log) is on disk and survives
// Restart.
func StartServer(t testing.TB) *Agent { return launch(t, "", false) }

// Restart stops the agent (SIGTERM), keeps it down for down, starts it
// again on the same ports and data directory, and waits for a leader.
func (a *Agent) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	if err := a.RestartErr(down); err != nil {
		t.Fatal(err)
	}
}

// RestartErr is Restart for a goroutine other than the test's (an HTTP
// handler of the VM tests' control endpoint): it returns what went wrong.
func (a *Agent) RestartErr(down time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stop()
	time.Sleep(down) // the outage itself, not a wait for a condition
	if err := a.run(); err != nil {
		return err
	}
	return a.waitLeader()
}

func launch(t testing.TB, hcl string, dev bool) *Agent {
	t.Helper()
	bin := testenv.Tool(t, "consul")
	ports := FreePorts(t, 4)
	dir := t.TempDir()
	a := &Agent{
		HTTPAddr: "127.0.0.1:" + strconv.Itoa(ports[0]),
		NodeName: "lvs-sync-test",
		LogPath:  filepath.Join(dir, "consul.log"),
		acls:     hcl != "",
	}
	logFile, err := os.Create(a.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"agent", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-node", a.NodeName,
		"-http-port", strconv.Itoa(ports[0]),
		"-server-port", strconv.Itoa(ports[1]),
		"-serf-lan-port", strconv.Itoa(ports[2]),
		"-serf-wan-port", strconv.Itoa(ports[3]),
		"-grpc-port", "-1", "-grpc-tls-port", "-1", "-dns-port", "-1",
		"-data-dir", filepath.Join(dir, "data"),
	}
	if dev {
		args = append([]string{"agent", "-dev"}, args[1:]...)
	} else {
		args = append(args, "-server", "-bootstrap-expect", "1", "-ui=false")
	}
	if hcl != "" {
		args = append(args, "-hcl", hcl)
	}
	a.run = func() error {
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting consul: %w", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		a.done = done
		var once sync.Once
		a.stop = func() {
			once.Do(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			})
		}
		return nil
	}
	if err := a.run(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.mu.Lock() // after a restart in flight
		a.stop()
		a.mu.Unlock()
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(a.LogPath); err == nil && len(b) > 0 {
				t.Logf("consul log (last 4 KiB):\n%s", tail(b, 4096))
			}
		}
	})

	conf := api.DefaultConfig()
	conf.Address = a.HTTPAddr
	conf.Token = ""
	conf.TokenFile = ""
	if hcl != "" {
		conf.Token = RootToken
	}
	a.Client, err = api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.waitLeader(); err != nil {
		t.Fatal(err)
	}
	return a
}

// waitLeader waits until the agent has elected itself leader (and, with
// ACLs, bootstrapped them).
func (a *Agent) waitLeader() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-a.done:
			b, _ := os.ReadFile(a.LogPath)
			return fmt.Errorf("consul exited during start:\n%s", tail(b, 4096))
		default:
		}
		if leader, err := a.Client.Status().Leader(); err == nil && leader != "" {
			if !a.acls {
				return nil
			}
			// With ACLs, the management token exists once the new
			// leader has bootstrapped them, a moment after it is elected.
			if _, _, err := a.Client.ACL().TokenReadSelf(nil); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("consul at %s elected no leader in 30s", a.HTTPAddr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreePorts returns n loopback ports that are free for both TCP and UDP
// right now (serf uses both).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var held []func() error
	defer func() {
		for _, c := range held {
			_ = c()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // UDP side taken; keep the TCP one held and try another
		}
		held = append(held, u.Close)
		ports = append(ports, port)
	}
	return ports
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Register registers a service instance on the agent with a TTL check named
// "<id>-ttl", which starts in the given status (passing, warning, critical).
func (a *Agent) Register(t testing.TB, reg *api.AgentServiceRegistration, status string) {
	t.Helper()
	reg.Check = &api.AgentServiceCheck{
		CheckID: reg.ID + "-ttl",
		Name:    reg.ID + " ttl",
		TTL:     "10m",
		Status:  status,
	}
	if err := a.Client.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("registering %s: %v", reg.ID, err)
	}
}

// SetStatus updates an instance's TTL check registered by Register.
func (a *Agent) SetStatus(t testing.TB, id, status, output string) {
	t.Helper()
	if err := a.Client.Agent().UpdateTTL(id+"-ttl", output, status); err != nil {
		t.Fatalf("setting %s %s: %v", id, status, err)
	}
}
