package config

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// decodeOptions validates the rest of ipvsadm's service options:
// persistence_netmask (-M), ops (-o) and the real servers' default
// connection thresholds, upper_threshold and lower_threshold (-x, -y).
func decodeOptions(vs *VirtualService, rv *rawVS, at attrs) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if rv.PersistMask != nil && vs.Address.IsValid() {
		bits, err := lvs.ParsePersistenceNetmask(*rv.PersistMask, vs.Address.Addr())
		switch {
		case err != nil:
			diags = append(diags, at.errorf("persistence_netmask", "Invalid persistence netmask", "%s", err))
		case vs.Persistence == 0:
			diags = append(diags, at.errorf("persistence_netmask", "Netmask without persistence",
				"persistence_netmask groups the clients of a persistent service: set persistence"))
		default:
			vs.PersistenceNetmask = bits
		}
	}
	if rv.OnePacket != nil && *rv.OnePacket {
		if vs.Protocol != lvs.UDP && vs.Protocol != 0 {
			diags = append(diags, at.errorf("ops", "One-packet scheduling needs udp",
				"the kernel schedules single packets for UDP only; protocol is %s", vs.Protocol))
		} else {
			vs.OnePacket = true
		}
	}
	thresholdsOK := true
	threshold := func(name string, raw *int) uint32 {
		if raw == nil {
			return 0
		}
		if *raw < 0 || *raw > lvs.MaxThreshold {
			diags = append(diags, at.errorf(name, "Invalid threshold", "%d: want a connection count from 0 (none) to %d", *raw, lvs.MaxThreshold))
			thresholdsOK = false
			return 0
		}
		return uint32(*raw)
	}
	vs.UpperThreshold = threshold("upper_threshold", rv.UpperThreshold)
	vs.LowerThreshold = threshold("lower_threshold", rv.LowerThreshold)
	if thresholdsOK && vs.LowerThreshold > vs.UpperThreshold {
		diags = append(diags, at.errorf("lower_threshold", "Lower threshold above the upper",
			"%d is above upper_threshold %d, which the kernel refuses: a real is overloaded at upper_threshold connections and serves again below lower_threshold",
			vs.LowerThreshold, vs.UpperThreshold))
	}
	return diags
}
