// Package vmtest boots Debian's kernel under qemu with an initramfs of the
// project's own, for the tests that need IPVS: the host kernel has none.
//
// scripts/vm-assets.sh stages the kernel, modules, busybox, ip and ipvsadm
// into $LVS_SYNC_CACHE; Boot adds an /init and the binaries under test,
// packs them as a newc cpio, boots, streams the serial console and returns
// the exit status of the guest command.
package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// HostFromGuest is the host's loopback as the guest sees it on qemu's user
// network: a guest connection to 10.0.2.2:PORT reaches 127.0.0.1:PORT.
const HostFromGuest = "10.0.2.2"

// GuestAddr returns how the guest reaches a host loopback address.
func GuestAddr(hostAddr string) string {
	_, port, _ := strings.Cut(hostAddr, ":")
	return HostFromGuest + ":" + port
}

// Options describe one boot.
type Options struct {
	// Files to put in the guest: guest path → host path (binaries: static).
	Files map[string]string
	// Command is the shell command the guest runs as root after boot; its
	// exit status is Boot's result.
	Command string
	// Env is set for Command.
	Env map[string]string
	// Memory in MiB (default 1024); Timeout for the whole boot (default 15m).
	Memory  int
	Timeout time.Duration
	// Output receives the serial console as it comes (default: t.Log).
	Output io.Writer
}

// Stage returns the staged assets, running scripts/vm-assets.sh (which
// installs and downloads what is missing) or failing the test loudly.
func Stage(t testing.TB) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	cmd := exec.Command(filepath.Join(root, "scripts", "vm-assets.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("staging the VM assets (scripts/vm-assets.sh): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// KernelBuild is the staged kernel's version line, as scripts/vm-assets.sh
// wrote it: uname -r and the Debian version ("6.1.0-57-amd64 Debian
// 6.1.192-3"). Every result taken in the VM names it.
func KernelBuild(t testing.TB, stage string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stage, "kernel.build"))
	if err != nil {
		t.Fatalf("the stage names no kernel build: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// BuildStatic builds a package's binary, or its test binary with -test,
// as a static executable for the guest.
func BuildStatic(t testing.TB, out, pkg string, test bool, tags ...string) {
	t.Helper()
	args := []string{"build", "-o", out}
	if test {
		args = []string{"test", "-c", "-o", out}
	}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /usr/bin /usr/sbin /var
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
ln -s /run /var/run
for m in $(cat /etc/modules.load); do modprobe "$m" || echo "vmtest: modprobe $m failed"; done
/sbin/ip link set lo up
/sbin/ip link set eth0 up
/sbin/ip addr add 10.0.2.15/24 dev eth0
/sbin/ip route add default via 10.0.2.2
echo 1 > /proc/sys/net/ipv4/ip_forward
echo "vmtest: up in $(cut -d' ' -f1 /proc/uptime)s, kernel $(uname -r) $(uname -v)"
cd /tmp
. /etc/vmtest.env
sh /etc/vmtest.cmd
echo "VMTEST-EXIT=$?"
sync
poweroff -f
`

var exitRE = regexp.MustCompile(`VMTEST-EXIT=(\d+)`)

// Boot boots the VM, runs opts.Command and returns its exit status. The
// qemu process is killed when the test ends, whatever happens.
func Boot(t testing.TB, stage string, opts Options) int {
	t.Helper()
	if opts.Memory == 0 {
		opts.Memory = 1024
	}
	if opts.Timeout == 0 {
		opts.Timeout = 15 * time.Minute
	}
	if opts.Output == nil {
		opts.Output = tlogWriter{t}
	}
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := writeInitramfs(initrd, stage, opts); err != nil {
		t.Fatalf("building the initramfs: %v", err)
	}

	// The user network gives the guest the host's loopback at 10.0.2.2
	// (guestfwd would carry a single stream: no good for an HTTP client).
	netdev := "user,id=n0"
	args := []string{
		"-machine", "q35", "-m", strconv.Itoa(opts.Memory), "-smp", "2",
		"-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio",
		"-kernel", filepath.Join(stage, "vmlinux"), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,romfile=",
	}
	args = append(accel(), args...)
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdin = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	exit := -1
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(opts.Output, line)
		if m := exitRE.FindStringSubmatch(line); m != nil {
			exit, _ = strconv.Atoi(m[1])
		}
	}
	err = cmd.Wait()
	t.Logf("vm: %s after %v (qemu: %v)", exitText(exit), time.Since(start).Round(time.Millisecond), err)
	if ctx.Err() != nil {
		t.Fatalf("vm: timed out after %v", opts.Timeout)
	}
	return exit
}

func exitText(code int) string {
	if code < 0 {
		return "no exit status from the guest"
	}
	return fmt.Sprintf("guest command exited %d", code)
}

// accel picks KVM only where a real one is loaded; otherwise TCG. The
// paravirtual KVM some hosts have cannot boot a normal kernel.
func accel() []string {
	for _, m := range []string{"/sys/module/kvm_intel", "/sys/module/kvm_amd"} {
		if _, err := os.Stat(m); err == nil {
			return []string{"-accel", "kvm", "-cpu", "host"}
		}
	}
	return []string{"-accel", "tcg", "-cpu", "max"}
}

func writeInitramfs(path, stage string, opts Options) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	c := &cpioWriter{w: bw}
	if err := c.addTree(filepath.Join(stage, "root")); err != nil {
		return err
	}
	modules, err := os.ReadFile(filepath.Join(stage, "modules.load"))
	if err != nil {
		return err
	}
	var env bytes.Buffer
	for k, v := range opts.Env {
		fmt.Fprintf(&env, "export %s=%s\n", k, strconv.Quote(v))
	}
	c.dir("etc", 0o755)
	c.file("init", 0o755, []byte(initScript))
	c.file("etc/modules.load", 0o644, modules)
	c.file("etc/vmtest.cmd", 0o644, []byte(opts.Command+"\n"))
	c.file("etc/vmtest.env", 0o644, env.Bytes())
	made := map[string]bool{}
	for guest, host := range opts.Files {
		data, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(guest, "/")
		if d := filepath.Dir(name); d != "." && !made[d] {
			made[d] = true
			c.dir(d, 0o755) // the stage's bin/ and sbin/ exist: a repeat is harmless
		}
		c.file(name, 0o755, data)
	}
	if err := c.close(); err != nil {
		return err
	}
	return bw.Flush()
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
