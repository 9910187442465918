package lvs

import (
	"slices"
	"testing"
)

func TestParseSchedFlags(t *testing.T) {
	tests := []struct {
		sched string
		names []string
		want  SchedFlags
		err   string
	}{
		{"sh", nil, 0, ""},
		{"sh", []string{"sh-fallback"}, 0x8, ""},
		{"sh", []string{"sh-port", "sh-fallback"}, 0x18, ""},
		{"mh", []string{"mh-fallback", "mh-port"}, 0x18, ""},
		{"mh", []string{"mh-port"}, 0x10, ""},
		{"wlc", nil, 0, ""},
		{"wlc", []string{"sh-fallback"}, 0, "sh-fallback is a flag of the sh scheduler, not of wlc"},
		{"sh", []string{"mh-fallback"}, 0, "mh-fallback is a flag of the mh scheduler, not of sh"},
		{"sh", []string{"fallback"}, 0, `unknown scheduler flag "fallback": the sh scheduler has sh-fallback and sh-port`},
		{"rr", []string{"flag-1"}, 0, `unknown scheduler flag "flag-1": only sh (sh-fallback, sh-port) and mh (mh-fallback, mh-port) have flags`},
	}
	for _, tt := range tests {
		got, err := ParseSchedFlags(tt.sched, tt.names)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("%s %q: error %v, want %q", tt.sched, tt.names, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("%s %q: %#x %v, want %#x", tt.sched, tt.names, got, err, tt.want)
		}
	}
}

// TestSchedFlagNames: the names ipvsadm -S prints after -b, in its order
// (ipvsadm.c print_sched_flags); the VM test compares with ipvsadm itself.
func TestSchedFlagNames(t *testing.T) {
	tests := []struct {
		sched string
		flags SchedFlags
		want  []string
	}{
		{"sh", 0, nil},
		{"sh", SchedFlag2 | SchedFlag1, []string{"sh-fallback", "sh-port"}},
		{"sh", SchedFlag3 | 0x1 | 0x4, []string{"flag-3"}}, // persistent and one-packet are not scheduler flags
		{"mh", SchedFlag1, []string{"mh-fallback"}},
		{"mh", SchedFlag2, []string{"mh-port"}},
		{"rr", SchedFlagsMask, []string{"flag-1", "flag-2", "flag-3"}},
	}
	for _, tt := range tests {
		if got := tt.flags.Names(tt.sched); !slices.Equal(got, tt.want) {
			t.Errorf("%s %#x: %q, want %q", tt.sched, uint32(tt.flags), got, tt.want)
		}
	}
	for _, s := range []string{"sh", "mh"} {
		if !HashesByClient(s) || FallbackFlag(s) != s+"-fallback" {
			t.Errorf("%s: hashes %v, fallback flag %q", s, HashesByClient(s), FallbackFlag(s))
		}
		if f, err := ParseSchedFlags(s, []string{FallbackFlag(s)}); err != nil || f != SchedFlag1 {
			t.Errorf("%s: its fallback flag parses to %#x %v", s, f, err)
		}
	}
	if HashesByClient("wlc") {
		t.Error("wlc hashes by client")
	}
}
