package ha

import (
	"errors"
	"fmt"
	"time"

	"github.com/lvs-sync/lvs-sync/ha/timings"
)

// Role is what a director is in the pair. The zero value is Standby, the
// role every director starts in (no preemption).
type Role int

// The roles.
const (
	Standby Role = iota
	Active
)

func (r Role) String() string {
	if r == Active {
		return "active"
	}
	return "standby"
}

// Timings are the heartbeat's and the lease's periods (ha/timings, a
// leaf that config checks an ha block's timings with).
type Timings = timings.Timings

// DefaultTimings are the design's: heartbeat every 50 ms, peer lost after
// 250 ms, lease renewed every 100 ms, lease TTL 600 ms.
func DefaultTimings() Timings { return timings.Default() }

// Lease is the value at lock_key, as JSON.
type Lease struct {
	// Holder is the active director's name; "" is a lease released.
	Holder string `json:"holder"`
	Epoch  uint64 `json:"epoch"`
	// Renewed is the holder's clock at its last write, for people: the
	// directors judge a lease's age by when they saw it change.
	Renewed time.Time `json:"renewed"`
	// HandedBy names the director that wrote the lease for Holder in a
	// handover, after stepping down; Holder confirms it.
	HandedBy string `json:"handed_by,omitempty"`
}

// Observation is lock_key as read from Consul.
type Observation struct {
	// Present is false when the key does not exist.
	Present bool
	Lease   Lease
	// Index is the key's ModifyIndex, or the query's index when absent:
	// a compare-and-set with it succeeds only if nothing wrote since.
	Index uint64
	// Fresh marks a read that is the key as it is now whatever index
	// came before: the read after a compare-and-set that failed, and the
	// watch's answer whose index went back (a snapshot restored, a
	// cluster rebuilt). An index below one seen before is taken only from
	// a fresh read; from any other it is an answer overtaken by a write.
	Fresh bool
}

// WriteKind is why a director writes the lease.
type WriteKind int

// The writes.
const (
	// Acquire: a standby takes the lease at epoch+1.
	Acquire WriteKind = iota + 1
	// Renew: the active renews its epoch.
	Renew
	// Release: a director that stepped down gives its lease up.
	Release
	// HandOver: the active, stepped down, writes the lease for its peer.
	HandOver
	// Confirm: a director takes up a lease written for it (handed over,
	// or its own acquire whose answer was lost).
	Confirm
)

func (k WriteKind) String() string {
	return [...]string{"none", "acquire", "renew", "release", "handover", "confirm"}[k]
}

// Write is a compare-and-set of the lease at Index (0: only if absent).
type Write struct {
	Kind  WriteKind
	Lease Lease
	Index uint64
}

// WriteResult is how a Write went.
type WriteResult struct {
	Write Write
	// OK: the write took; Index is then the key's new ModifyIndex.
	OK    bool
	Index uint64
	// Err: Consul could not be asked (the write may or may not have
	// taken). Neither OK nor Err nor Refused: the key had changed.
	Err error
	// Refused: Consul refused the write (its ACLs): the key did not
	// change, and no write will take until the token may write it.
	Refused error
	// Current is the key as read after a write that did not take, if the
	// read worked.
	Current *Observation
}

// Heartbeat is what a director tells its peer every Timings.Heartbeat.
type Heartbeat struct {
	From string `json:"from"`
	// Incarnation tells one run of a director from the next.
	Incarnation uint64 `json:"inc"`
	Role        Role   `json:"role"`
	// Epoch is the active's lease epoch (0 from a standby).
	Epoch uint64 `json:"epoch"`
	// Stamp is the sender's time since it started, in nanoseconds.
	Stamp int64 `json:"stamp"`
	// Guard is a standby's "I hear you as active and will not take over
	// while I do", for Epoch GuardEpoch; Echo is the Stamp of the
	// heartbeat it heard last (from incarnation EchoInc), which tells the
	// active how old the promise is on its own clock.
	Guard      bool   `json:"guard,omitempty"`
	GuardEpoch uint64 `json:"guard_epoch,omitempty"`
	EchoInc    uint64 `json:"echo_inc,omitempty"`
	Echo       int64  `json:"echo,omitempty"`
	// Unready is why the sender could not serve now (no sync applied
	// yet, Consul unreachable); "" is ready, as a director without it
	// (an earlier version) counts. A handover to an unready peer is
	// refused.
	Unready string `json:"unready,omitempty"`
}

// ActionKind is what the host must do.
type ActionKind int

// The actions, in the order the machine emits them.
const (
	// BecomeActive: sync daemon to master, VIPs on the interface,
	// announce.
	BecomeActive ActionKind = iota + 1
	// StepDown: VIPs off the interface; the director drains (it still
	// schedules what reaches it) until Drained.
	StepDown
	// Announce the VIPs again.
	Announce
	// WriteLease: send Write to Consul and report the result.
	WriteLease
	// KeepVIPs: refresh the lifetime of the VIPs on the interface
	// (Timings.VIPLifetime), which lapses in a director that died active.
	KeepVIPs
	// Drained: a director that stepped down stops scheduling: backup_only
	// on, the master sync daemon stopped (the backup keeps running).
	Drained
)

func (k ActionKind) String() string {
	return [...]string{"none", "become-active", "step-down", "announce", "write-lease", "keep-vips", "drained"}[k]
}

// Action is one thing the machine asks of its drivers.
type Action struct {
	Kind   ActionKind
	Epoch  uint64 // BecomeActive
	Reason string // StepDown
	Write  Write  // WriteLease
}

func (a Action) String() string {
	switch a.Kind {
	case BecomeActive:
		return fmt.Sprintf("become-active epoch=%d", a.Epoch)
	case StepDown:
		return "step-down: " + a.Reason
	case WriteLease:
		return fmt.Sprintf("write %s holder=%q epoch=%d index=%d", a.Write.Kind, a.Write.Lease.Holder, a.Write.Lease.Epoch, a.Write.Index)
	}
	return a.Kind.String()
}

// ErrNotActive is the answer to a handover asked of a standby.
var ErrNotActive = errors.New("this director is not active")
