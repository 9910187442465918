package daemon

import (
	"net/netip"
	"slices"
	"time"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/announce"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// Speaker announces this director's VIPs to its routers over BGP, with
// director.bgp; cmd adapts the bgp package's speaker to it.
type Speaker interface {
	// Announce makes the announced set exactly prefixes (host routes),
	// the rest withdrawn; it is idempotent.
	Announce(prefixes []netip.Prefix) error
	// State is what the speaker says of its sessions and announcements.
	State() status.Speaker
}

// announceRetry is how soon an announcement the speaker refused is
// tried again, when no sync comes sooner.
const announceRetry = time.Second

// advertiser is the bgp side of the loop: the announce rule, and what
// the speaker last took. The loop's goroutine owns it, but for vips,
// which shared publishes.
type advertiser struct {
	rule announce.Rule
	// sent is the set the speaker last took; ok tells whether it took
	// any yet.
	sent []netip.Prefix
	ok   bool
	// vips are the rule's last decision, to log what changed.
	vips []announce.VIP
	err  warned[string]
}

// advertise applies the announce rule after a sync, synced telling
// whether a sync was ever applied, and hands the speaker the VIPs to
// announce when they changed. It returns when the loop must try again
// because the speaker refused them (zero: no need).
func (d *Daemon) advertise(desired ipvs.State, synced bool, now time.Time) (retry time.Time) {
	if d.opts.Speaker == nil {
		return time.Time{}
	}
	frozen := d.state.acl.frozen(d.cfg)
	services := make([]announce.Service, 0, len(d.cfg.VirtualServices))
	for _, vs := range d.cfg.VirtualServices {
		k := vs.Key()
		services = append(services, announce.ServiceOf(vs.VIPAddrs(), desired[k], frozen[k]))
	}
	vips := d.state.bgp.rule.Decide(announce.Input{Synced: synced, Services: services, Now: now})
	if !d.speak(vips) {
		return now.Add(announceRetry)
	}
	return time.Time{}
}

// speak publishes the rule's VIPs, logs those that changed, and hands the
// speaker their prefixes if they differ from what it took last. It
// reports false when the speaker refused them.
func (d *Daemon) speak(vips []announce.VIP) bool {
	st, log := &d.state.bgp, d.log.Named("announce")
	changed, gone := announce.Changed(st.vips, vips)
	st.vips = vips
	d.shared.setVIPs(vips)
	prefixes := announce.Prefixes(vips)
	if st.ok && slices.Equal(st.sent, prefixes) {
		return true
	}
	err := d.opts.Speaker.Announce(prefixes)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch began, ended := updateErr(st.err, msg); {
	case began:
		log.Warn("the bgp speaker refused the announcements; trying again", "prefixes", len(prefixes), "error", err)
	case ended:
		log.Info("the bgp speaker took the announcements again")
	}
	if err != nil {
		return false
	}
	st.sent, st.ok = prefixes, true
	for _, v := range changed {
		switch {
		case v.Announced:
			log.Info("announcing vip", "vip", v.Addr)
		case v.Reason == announce.NotSynced || v.Reason == announce.Stopping:
			// At start and at stop every VIP says so: one line says it for all.
			log.Debug("not announcing vip", "vip", v.Addr, "reason", v.Reason)
		default:
			log.Info("not announcing vip", "vip", v.Addr, "reason", v.Reason)
		}
	}
	for _, a := range gone {
		log.Info("withdrew vip: no virtual service has it", "vip", a)
	}
	return true
}

// withdraw withdraws every VIP as lvs-sync stops, then waits the bgp
// block's shutdown_delay, the kernel still forwarding, while the routers
// move the flows to the other directors; a withdrawal the speaker refuses
// is not waited for (stopping the speaker closes its sessions, which
// withdraws as well).
func (d *Daemon) withdraw() {
	if d.opts.Speaker == nil {
		return
	}
	now := d.clock.Now()
	services := make([]announce.Service, 0, len(d.cfg.VirtualServices))
	for _, vs := range d.cfg.VirtualServices {
		services = append(services, announce.Service{VIPs: vs.VIPAddrs()})
	}
	vips := d.state.bgp.rule.Decide(announce.Input{Stopping: true, Services: services, Now: now})
	if !d.speak(vips) {
		return
	}
	delay := config.DefaultShutdownDelay
	if b := d.cfg.Director.BGP; b != nil { // a reload may have taken the block out: the speaker runs until the restart
		delay = b.ShutdownDelay
	}
	d.log.Named("announce").Info("withdrew every vip; the kernel forwards while the routers converge", "shutdown_delay", delay)
	if delay > 0 {
		<-d.clock.After(delay)
	}
}

// BGP is the view of what this director announces, with director.bgp;
// nil without.
func (d *Daemon) BGP() *status.BGPView {
	if d.opts.Speaker == nil {
		return nil
	}
	s := &d.shared
	s.mu.Lock()
	vips := s.vips
	s.mu.Unlock()
	return status.BGPOf(d.opts.Speaker.State(), vips, d.clock.Now())
}

// setVIPs publishes the announce rule's last decision.
func (s *shared) setVIPs(vips []announce.VIP) {
	s.mu.Lock()
	s.vips = vips
	s.mu.Unlock()
}
