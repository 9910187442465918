package genl

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// statsRun writes a nested IPVS_STATS_ATTR_* run as the kernel does: the
// 32-bit run (ip_vs_genl_fill_stats) has connections and packets as u32
// and bytes as u64, the 64-bit one (ip_vs_genl_fill_stats64) every
// counter as u64; both carry the rates, which lvs-sync does not read.
func statsRun(e *encoder, typ uint16, s ipvs.Stats, wide bool) {
	n := e.attr(typ | nlaNested)
	small := func(t uint16, v uint64) {
		if wide {
			a := e.attr(t)
			e.b = native.AppendUint64(e.b, v)
			e.attrEnd(a)
			return
		}
		e.u32(t, uint32(v))
	}
	big := func(t uint16, v uint64) {
		a := e.attr(t)
		e.b = native.AppendUint64(e.b, v)
		e.attrEnd(a)
	}
	small(statsConns, s.Conns)
	small(statsInPkts, s.InPkts)
	small(statsOutPkts, s.OutPkts)
	big(statsInBytes, s.InBytes)
	big(statsOutBytes, s.OutBytes)
	for rate := uint16(6); rate <= 10; rate++ {
		small(rate, 999) // cps, inpps, outpps, inbps, outbps
	}
	e.attrEnd(n)
}

// TestDumpReadsStats: a service and a destination of a dump, crafted as
// the kernel sends them, read with their 64-bit counters, whether the
// 64-bit run comes after the 32-bit one (as Linux sends it) or before;
// a kernel older than 4.1, with the 32-bit run alone, still gives its
// counters. The counters stay out of Equal.
func TestDumpReadsStats(t *testing.T) {
	k := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	rk := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.11"), Port: 8080}
	// Above 2^32 where the 64-bit run differs from the wrapped 32-bit one.
	want := ipvs.Stats{Conns: 1<<32 + 7, InPkts: 1<<32 + 11, OutPkts: 13, InBytes: 1<<40 + 17, OutBytes: 1<<41 + 19}
	wrapped := ipvs.Stats{Conns: 7, InPkts: 11, OutPkts: 13, InBytes: want.InBytes, OutBytes: want.OutBytes}

	for _, c := range []struct {
		name   string
		runs   []bool // wide or not, in the order sent
		expect ipvs.Stats
	}{
		{"32 then 64", []bool{false, true}, want},
		{"64 then 32", []bool{true, false}, want},
		{"32 alone", []bool{false}, wrapped},
		{"none", nil, ipvs.Stats{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var e encoder
			start := e.begin(42, unix.NLM_F_MULTI, 1, cmdNewService, ipvsGenlVersion)
			n := e.attr(attrService | nlaNested)
			e.u16(svcAF, unix.AF_INET)
			e.u16(svcProtocol, uint16(lvs.TCP))
			e.addr(svcAddr, k.Addr)
			e.be16(svcPort, k.Port)
			e.str(svcSchedName, "wlc")
			for _, wide := range c.runs {
				typ := uint16(svcStats)
				if wide {
					typ = svcStats64
				}
				statsRun(&e, typ, want, wide)
			}
			e.attrEnd(n)
			e.end(start)
			_, payload, _, err := nextMessage(e.b)
			if err != nil {
				t.Fatal(err)
			}
			gotK, s, err := parseService(payload)
			if err != nil || gotK != k {
				t.Fatalf("service %v (%v), want %v", gotK, err, k)
			}
			if s.Stats != c.expect || s.Scheduler != "wlc" {
				t.Errorf("service stats %+v scheduler %q, want %+v wlc", s.Stats, s.Scheduler, c.expect)
			}
			if !s.Equal(&ipvs.Service{Scheduler: "wlc"}) {
				t.Error("a service's stats take part in Equal")
			}

			e = encoder{}
			start = e.begin(42, unix.NLM_F_MULTI, 1, cmdNewDest, ipvsGenlVersion)
			n = e.attr(attrDest | nlaNested)
			e.addr(destAddr, rk.Addr)
			e.be16(destPort, rk.Port)
			e.u32(destFwdMethod, uint32(lvs.Route))
			e.u32(destWeight, 3)
			e.u32(destActive, 5)
			for _, wide := range c.runs {
				typ := uint16(destStats)
				if wide {
					typ = destStats64
				}
				statsRun(&e, typ, want, wide)
			}
			e.u16(destAddrFamily, unix.AF_INET)
			e.attrEnd(n)
			e.end(start)
			_, payload, _, err = nextMessage(e.b)
			if err != nil {
				t.Fatal(err)
			}
			gotRK, r, err := parseReal(payload, unix.AF_INET)
			if err != nil || gotRK != rk {
				t.Fatalf("real %v (%v), want %v", gotRK, err, rk)
			}
			if r.Stats != c.expect || r.ActiveConns != 5 || r.Weight != 3 {
				t.Errorf("real stats %+v active %d weight %d, want %+v 5 3", r.Stats, r.ActiveConns, r.Weight, c.expect)
			}
			if !r.Equal(ipvs.Real{Weight: 3, Forward: lvs.Route}) {
				t.Error("a real's stats take part in Equal")
			}
		})
	}
}
