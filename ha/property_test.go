package ha

import (
	"testing"
	"time"
)

// TestRandomFaults runs the pair through random interleavings of faults —
// each director's path to Consul, its carrier, each direction of the
// heartbeat, an older snapshot of Consul restored (the index goes back,
// and the raft index too when the cluster is rebuilt), a director's
// writes refused by Consul's ACLs — with random delays, and checks at every simulated
// millisecond that the two never hold the VIP at once, and that the pair
// recovers when the conditions allow:
//   - everything healed for 2s: exactly one is active;
//   - one director healthy and the other cut off entirely (no Consul and
//     no heartbeat either way, or no carrier) for 1s: the healthy one is
//     active.
func TestRandomFaults(t *testing.T) {
	seeds, length := 100, 30*time.Second
	if testing.Short() {
		seeds = 30
	}
	for seed := range uint64(seeds) {
		s := newSim(t, 100+seed)
		var healedAt, isolatedAt [2]time.Time
		next := s.now()
		for end := s.now().Add(length); s.now().Before(end); {
			if !s.now().Before(next) {
				era := s.era
				s.randomFault()
				if s.era != era {
					// A restored lease is a lease changed: the takeover's
					// TTL starts again.
					healedAt, isolatedAt = [2]time.Time{}, [2]time.Time{}
				}
				next = s.now().Add(time.Duration(50+s.rng.IntN(1500)) * time.Millisecond)
			}
			s.step()
			if s.overlap != "" {
				t.Fatalf("seed %d: two actives: %s\n%s", seed, s.overlap, s.tail())
			}
			now := s.now()
			for i := range s.d {
				if s.healthy(i) && s.healthy(1-i) && s.link[0][1] && s.link[1][0] {
					if healedAt[i].IsZero() {
						healedAt[i] = now
					}
				} else {
					healedAt[i] = time.Time{}
				}
				if s.healthy(i) && s.isolated(1-i) {
					if isolatedAt[i].IsZero() {
						isolatedAt[i] = now
					}
				} else {
					isolatedAt[i] = time.Time{}
				}
				if !healedAt[i].IsZero() && now.Sub(healedAt[i]) > 2*time.Second && s.active() < 0 {
					t.Fatalf("seed %d: healed for 2s and no active\n%s", seed, s.tail())
				}
				if !isolatedAt[i].IsZero() && now.Sub(isolatedAt[i]) > time.Second && !s.d[i].vip {
					t.Fatalf("seed %d: %s healthy and its peer cut off for 1s, and %s is not active\n%s", seed, s.d[i].name, s.d[i].name, s.tail())
				}
			}
		}
	}
}

func (s *sim) healthy(i int) bool { return s.d[i].consul && s.d[i].carrier && !s.d[i].refused }

func (s *sim) isolated(i int) bool {
	return !s.d[i].carrier || !s.d[i].consul && !s.link[0][1] && !s.link[1][0]
}

// randomFault changes one thing at random, or heals everything.
func (s *sim) randomFault() {
	i := s.rng.IntN(2)
	switch s.rng.IntN(8) {
	case 0:
		s.setConsul(i, !s.d[i].consul)
	case 1:
		s.setCarrier(i, !s.d[i].carrier)
	case 2:
		s.link[i][1-i] = !s.link[i][1-i]
	case 3:
		cut := s.rng.IntN(2) == 0
		s.cutHeartbeat(cut)
	case 4: // cut off entirely
		s.setConsul(i, false)
		s.link = [2][2]bool{}
	case 5: // a snapshot saved, or an older one restored
		if s.saved == nil || s.rng.IntN(2) == 0 {
			snap := s.snapshot()
			s.saved = &snap
		} else {
			s.restore(*s.saved, s.rng.IntN(2) == 0)
		}
	case 6: // its writes refused by Consul's ACLs, or allowed again
		s.d[i].refused = !s.d[i].refused
	default:
		for j := range s.d {
			s.d[j].refused = false
			if !s.d[j].consul {
				s.setConsul(j, true)
			}
			if !s.d[j].carrier {
				s.setCarrier(j, true)
			}
		}
		s.cutHeartbeat(false)
	}
}
