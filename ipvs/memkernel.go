package ipvs

import (
	"maps"
	"net/netip"
	"sync"
	"syscall"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// MemKernel is an IPVS table in memory: what `lvs-sync run -dry-run`
// applies to, and what tests of the code above the kernel run against. It
// answers every call lvs-sync makes as the kernel does (the same contract
// test runs against both, the kernel in the VM): EEXIST for a duplicate,
// ESRCH for a missing service, ENOENT for a missing real or an unknown
// scheduler, EINVAL for an IPv6 netmask out of 1..128 and for a new real
// at an address that is no unicast one (ip_vs_new_dest), ERANGE for a
// negative weight or a lower threshold above the upper one, and EINVAL for
// a threshold above INT_MAX (Real.Check, as current kernels). It is safe
// for concurrent use. It has no test knobs: those are in internal/ipvstest.
//
// It keeps each service's reals in the kernel's list order (Real.Position,
// 1 at the head), as __ip_vs_update_dest does: an added real goes to the
// head, an update leaves it in place, a delete closes the gap. (The
// kernel's trash, which gives a real added back its connections, is not
// modelled: the connection counts are internal/ipvstest's.)
type MemKernel struct {
	mu      sync.Mutex
	state   State
	daemons map[SyncRole]SyncDaemon // sync.go
}

var (
	_ Kernel        = (*MemKernel)(nil)
	_ ServiceReader = (*MemKernel)(nil)
)

// NewMemKernel returns a table holding a copy of st, connection counts
// and the reals' positions included; a service whose reals have no
// positions of their own (a desired state) lists them as a fresh add
// would: ascending order, each at the head.
func NewMemKernel(st State) *MemKernel {
	m := &MemKernel{state: State{}}
	for k, svc := range st.Clone() {
		if _, ok := KernelOrder(svc.Reals); !ok {
			for i, rk := range CanonicalOrder(svc.Reals) {
				r := svc.Reals[rk]
				r.Position = i + 1
				svc.Reals[rk] = r
			}
		}
		m.state[memKey(k)] = svc
	}
	return m
}

// State returns a copy of the whole table.
func (m *MemKernel) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.Clone()
}

// schedulers are the kernel's IPVS schedulers (net/netfilter/ipvs/Kconfig);
// the kernel loads ip_vs_<name> on demand and answers ENOENT for another.
// "none" is no scheduler, which ip_vs_add_service and ip_vs_edit_service
// take (a staged add's, stage.go).
var schedulers = map[string]bool{
	"rr": true, "wrr": true, "lc": true, "wlc": true, "fo": true, "ovf": true,
	"lblc": true, "lblcr": true, "dh": true, "sh": true, "mh": true,
	"sed": true, "nq": true, "twos": true, StageScheduler: true,
}

// memKey is the key the kernel finds a service by: a firewall-mark service
// is its mark and address family alone.
func memKey(k lvs.ServiceKey) lvs.ServiceKey {
	if k.FWMark == 0 {
		return k
	}
	if k.Addr.Is6() {
		return lvs.ServiceKey{FWMark: k.FWMark, Addr: netip.IPv6Unspecified()}
	}
	return lvs.ServiceKey{FWMark: k.FWMark, Addr: netip.IPv4Unspecified()}
}

// checkService refuses what ip_vs_add_service and ip_vs_edit_service do.
func checkService(k lvs.ServiceKey, s *Service) error {
	if !schedulers[s.Scheduler] {
		return syscall.ENOENT
	}
	if k.Addr.Is6() && (s.Netmask < 1 || s.Netmask > 128) {
		return syscall.EINVAL
	}
	return nil
}

// settings is what the kernel keeps of a service: never the reals.
func settings(s *Service) *Service {
	return &Service{Scheduler: s.Scheduler, Flags: s.Flags &^ FlagHashed, Timeout: s.Timeout, Netmask: s.Netmask}
}

func (m *MemKernel) Services() (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := make(State, len(m.state))
	for k, svc := range m.state {
		st[k] = settings(svc)
	}
	return st, nil
}

// Service reads one service without its reals; ESRCH if there is none,
// as the kernel answers a get of a missing service.
func (m *MemKernel) Service(k lvs.ServiceKey) (*Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc, ok := m.state[memKey(k)]
	if !ok {
		return nil, syscall.ESRCH
	}
	return settings(svc), nil
}

// Reals answers for a missing service as the kernel's dump does: no reals,
// no error.
func (m *MemKernel) Reals(k lvs.ServiceKey) (map[lvs.RealKey]Real, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc, ok := m.state[memKey(k)]
	if !ok {
		return map[lvs.RealKey]Real{}, nil
	}
	return maps.Clone(svc.Reals), nil
}

func (m *MemKernel) AddService(k lvs.ServiceKey, s *Service) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k = memKey(k)
	if _, ok := m.state[k]; ok {
		return syscall.EEXIST
	}
	if err := checkService(k, s); err != nil {
		return err
	}
	svc := settings(s)
	svc.Reals = map[lvs.RealKey]Real{}
	m.state[k] = svc
	return nil
}

// UpdateService changes the settings and keeps the reals.
func (m *MemKernel) UpdateService(k lvs.ServiceKey, s *Service) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc, ok := m.state[memKey(k)]
	if !ok {
		return syscall.ESRCH
	}
	if err := checkService(k, s); err != nil {
		return err
	}
	reals := svc.Reals
	*svc = *settings(s)
	svc.Reals = reals
	return nil
}

func (m *MemKernel) DelService(k lvs.ServiceKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.state[memKey(k)]; !ok {
		return syscall.ESRCH
	}
	delete(m.state, memKey(k))
	return nil
}

// realOf finds a service and checks a real's settings as the kernel does
// before it looks the real up.
func (m *MemKernel) realOf(k lvs.ServiceKey, r Real) (*Service, error) {
	svc, ok := m.state[memKey(k)]
	if !ok {
		return nil, syscall.ESRCH
	}
	if r.Weight < 0 || r.LowerThreshold > r.UpperThreshold {
		return nil, syscall.ERANGE
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	return svc, nil
}

func (m *MemKernel) AddReal(k lvs.ServiceKey, rk lvs.RealKey, r Real) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc, err := m.realOf(k, r)
	if err != nil {
		return err
	}
	if _, ok := svc.Reals[rk]; ok {
		return syscall.EEXIST
	}
	if !unicast(rk.Addr) {
		return syscall.EINVAL
	}
	for k, o := range svc.Reals {
		o.Position++
		svc.Reals[k] = o
	}
	svc.Reals[rk] = Real{Weight: r.Weight, Forward: r.Forward, UpperThreshold: r.UpperThreshold, LowerThreshold: r.LowerThreshold, Position: 1}
	return nil
}

// UpdateReal changes the weight, forwarding method and thresholds and
// keeps the connection counts.
func (m *MemKernel) UpdateReal(k lvs.ServiceKey, rk lvs.RealKey, r Real) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc, err := m.realOf(k, r)
	if err != nil {
		return err
	}
	old, ok := svc.Reals[rk]
	if !ok {
		return syscall.ENOENT
	}
	old.Weight, old.Forward = r.Weight, r.Forward
	old.UpperThreshold, old.LowerThreshold = r.UpperThreshold, r.LowerThreshold
	svc.Reals[rk] = old
	return nil
}

func (m *MemKernel) DelReal(k lvs.ServiceKey, rk lvs.RealKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc, ok := m.state[memKey(k)]
	if !ok {
		return syscall.ESRCH
	}
	gone, ok := svc.Reals[rk]
	if !ok {
		return syscall.ENOENT
	}
	delete(svc.Reals, rk)
	for k, o := range svc.Reals {
		if o.Position > gone.Position {
			o.Position--
			svc.Reals[k] = o
		}
	}
	return nil
}

var _ BatchKernel = (*MemKernel)(nil)

// ApplyBatch makes the changes one by one, each whatever became of the
// others, as the kernel does with a batch.
func (m *MemKernel) ApplyBatch(ops []Op) []error {
	errs := make([]error, len(ops))
	for i, op := range ops {
		errs[i] = call(m, op)
	}
	return errs
}

// unicast is ip_vs_new_dest's test of a new real's address, as far as it
// can be made without the routing table: IPv4 0.0.0.0, multicast and
// 255.255.255.255 are refused (the kernel also refuses a subnet's
// broadcast address; the rest of 0.0.0.0/8 is unicast since Linux 5.3),
// as are IPv6 ::, multicast and link-local addresses (the kernel accepts
// a link-local one that is the director's own).
func unicast(a netip.Addr) bool {
	if a.Is4() {
		return !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return !a.IsUnspecified() && !a.IsMulticast() && !a.IsLinkLocalUnicast()
}
