package ha

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// SyncDaemons starts and stops the kernel's sync daemons;
// KernelSyncDaemons adapts ipvs.SyncKernel (genl.Client, ipvs.MemKernel)
// to it. Start of a running role and Stop of a stopped one are no errors.
type SyncDaemons interface {
	Start(ipvs.SyncRole) error
	Stop(ipvs.SyncRole) error
	Running() ([]ipvs.SyncRole, error)
}

// AddrSet keeps host addresses on a link; *hostnet.AddrSet is one.
type AddrSet interface {
	Sync(want []netip.Addr, owned func(netip.Addr) bool) (added, removed []netip.Addr, err error)
}

// Announcer announces addresses on a link; hostnet.NewAnnouncer's is one.
type Announcer interface {
	Announce(link string, addrs []netip.Addr) error
}

// Sysctl sets kernel parameters by their key under /proc/sys;
// hostnet.ProcSys is one.
type Sysctl interface {
	Get(key string) (string, error)
	Set(key, value string) error
}

// The sysctls of the roles.
const (
	backupOnly = "net/ipv4/vs/backup_only"
)

// arpSysctls keep the VIPs on lo from being answered for on other links,
// as on a gate real server: the standby must not draw the VIP's traffic.
var arpSysctls = [][2]string{
	{"net/ipv4/conf/all/arp_ignore", "1"}, {"net/ipv4/conf/all/arp_announce", "2"},
	{"net/ipv4/conf/lo/arp_ignore", "1"}, {"net/ipv4/conf/lo/arp_announce", "2"},
}

// Host makes the host follow the role. Both roles keep the VIPs on lo
// (a real server of the pair's own services serves them there, as in
// the streamline set-up, and with the ARP sysctls nothing answers for
// them); the active also has them on Interface, announced.
//
// It is the daemon's VIP syncer too (Sync): the daemon says which VIPs
// its services have, the role says where they go.
type Host struct {
	Interface   string
	Daemons     SyncDaemons
	OnInterface AddrSet
	OnLo        AddrSet
	Announcer   Announcer
	Sysctl      Sysctl
	Log         hclog.Logger

	mu     sync.Mutex
	active bool
	vips   []netip.Addr
	owned  func(netip.Addr) bool
}

// SetVIPs sets the VIPs before the daemon's first sync: the config's,
// so that a director starting standby takes them off the interface at
// once, whatever an earlier run left there.
func (h *Host) SetVIPs(vips []netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.vips = slices.Clone(vips)
}

// Sync places the daemon's VIPs by the role; owned says which addresses
// were lvs-sync's, to be removed when no longer wanted.
func (h *Host) Sync(want []netip.Addr, owned func(netip.Addr) bool) (added, removed []netip.Addr, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.vips, h.owned = slices.Clone(want), owned
	return h.place()
}

// ours is whether a is a VIP lvs-sync put somewhere.
func (h *Host) ours(a netip.Addr) bool {
	return slices.Contains(h.vips, a) || h.owned != nil && h.owned(a)
}

// place puts the VIPs on lo, and on the interface only when active.
func (h *Host) place() (added, removed []netip.Addr, err error) {
	var onIf []netip.Addr
	if h.active {
		onIf = h.vips
	}
	// Off the interface first: the step that keeps two directors from
	// having the VIP.
	a1, r1, err1 := h.OnInterface.Sync(onIf, h.ours)
	a2, r2, err2 := h.OnLo.Sync(h.vips, h.ours)
	return append(a1, a2...), append(r1, r2...), errors.Join(err1, err2)
}

// Unplace takes vips off the interface set: the first thing a starting
// director does, before anything that can fail or wait (Consul, the state
// file's lock, netlink to IPVS). A director starts standby, and one
// killed while active (kill -9, a panic, the OOM killer) may have left
// them there; Prepare later does the rest.
func Unplace(onInterface AddrSet, vips []netip.Addr) error {
	_, _, err := onInterface.Sync(nil, func(a netip.Addr) bool { return slices.Contains(vips, a) })
	return err
}

// Prepare sets a starting director up as standby: the backup daemon (and
// no master), backup_only=1, the ARP sysctls, the VIPs off the interface
// and on lo.
func (h *Host) Prepare() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.active = false
	var errs []error
	for _, s := range arpSysctls {
		errs = append(errs, h.set(s[0], s[1]))
	}
	errs = append(errs, h.set(backupOnly, "1"))
	_, _, err := h.place()
	// A master daemon left by a run that died active stops: this one
	// starts standby.
	errs = append(errs, err, h.Daemons.Stop(ipvs.SyncMaster), h.Daemons.Start(ipvs.SyncBackup))
	return errors.Join(errs...)
}

// BecomeActive: the sync daemon to master first (so synced connections
// are used from the first packet), backup_only off, the VIPs on the
// interface, announced.
func (h *Host) BecomeActive(epoch uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	errs := []error{h.Daemons.Start(ipvs.SyncMaster), h.set(backupOnly, "0")}
	h.active = true
	_, _, err := h.place()
	errs = append(errs, err, h.announce())
	h.Log.Info("active", "epoch", epoch, "interface", h.Interface, "vips", len(h.vips))
	return errors.Join(errs...)
}

// StepDown takes the VIPs off the interface: from now on this director
// answers no ARP for them. It keeps scheduling (backup_only off, the
// master daemon on) what still reaches it until Drained: see Machine.
func (h *Host) StepDown(reason string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.active = false
	_, _, err := h.place()
	h.Log.Info("standby, draining", "reason", reason)
	return err
}

// Drained: backup_only on and the master daemon stopped (the backup keeps
// running): the director no longer schedules.
func (h *Host) Drained() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	err := errors.Join(h.set(backupOnly, "1"), h.Daemons.Stop(ipvs.SyncMaster))
	h.Log.Info("drained")
	return err
}

// KeepVIPs refreshes the lifetime of the VIPs on the interface (the
// OnInterface set gives them one: Timings.VIPLifetime), and puts back one
// that someone removed; a standby has none there to keep.
func (h *Host) KeepVIPs() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.active {
		return nil
	}
	_, _, err := h.OnInterface.Sync(h.vips, h.ours)
	return err
}

// Announce announces the VIPs on the interface again.
func (h *Host) Announce() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.announce()
}

func (h *Host) announce() error {
	if len(h.vips) == 0 || !h.active {
		return nil
	}
	if err := h.Announcer.Announce(h.Interface, h.vips); err != nil {
		return fmt.Errorf("announcing vips on %s: %w", h.Interface, err)
	}
	return nil
}

// DaemonState says which sync daemons run: "master+backup", "backup",
// "none", or why it is not known.
func (h *Host) DaemonState() string {
	roles, err := h.Daemons.Running()
	if err != nil {
		return "unknown: " + err.Error()
	}
	if len(roles) == 0 {
		return "none"
	}
	slices.Sort(roles)
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = r.String()
	}
	return strings.Join(names, "+")
}

func (h *Host) set(key, value string) error {
	if old, err := h.Sysctl.Get(key); err == nil && old == value {
		return nil
	}
	if err := h.Sysctl.Set(key, value); err != nil {
		return err
	}
	h.Log.Info("set sysctl", "key", key, "value", value)
	return nil
}
