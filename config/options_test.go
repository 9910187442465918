package config

import (
	"testing"
)

// gateVS is a virtual service "web" with gate forwarding and body.
func gateVS(body string) string {
	return "virtual_service \"web\" {\n  forwarding = \"gate\"\n" + body + "\n}\n"
}

func TestServiceOptions(t *testing.T) {
	vs := gateVS
	for _, tt := range []struct {
		name         string
		src          string
		mask         int
		ops          bool
		upper, lower uint32
	}{
		{"none", vs(`address = "10.0.0.1:80"`), 0, false, 0, 0},
		{"an ipv4 /24", vs(`address = "10.0.0.1:80"
persistence = "300s"
persistence_netmask = "255.255.255.0"`), 24, false, 0, 0},
		{"an ipv4 /20", vs(`address = "10.0.0.1:80"
persistence = "300s"
persistence_netmask = "255.255.240.0"`), 20, false, 0, 0},
		{"the host mask", vs(`address = "10.0.0.1:80"
persistence = "300s"
persistence_netmask = "255.255.255.255"`), 32, false, 0, 0},
		{"an ipv6 /64 as a number", vs(`address = "[2001:db8::1]:80"
persistence = "300s"
persistence_netmask = 64`), 64, false, 0, 0},
		{"an ipv6 /48 as a string", vs(`address = "[2001:db8::1]:80"
persistence = "300s"
persistence_netmask = "48"`), 48, false, 0, 0},
		{"ops on udp", vs(`address = "10.0.0.1:53"
protocol = "udp"
ops = true`), 0, true, 0, 0},
		{"ops off on tcp", vs(`address = "10.0.0.1:80"
ops = false`), 0, false, 0, 0},
		{"both thresholds", vs(`address = "10.0.0.1:80"
upper_threshold = 100
lower_threshold = 50`), 0, false, 100, 50},
		{"equal thresholds", vs(`address = "10.0.0.1:80"
upper_threshold = 1
lower_threshold = 1`), 0, false, 1, 1},
		{"an upper threshold alone", vs(`address = "10.0.0.1:80"
upper_threshold = 2147483647`), 0, false, 2147483647, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.src), "t.hcl")
			if err != nil {
				t.Fatal(err)
			}
			v := cfg.VirtualServices[0]
			if v.PersistenceNetmask != tt.mask || v.OnePacket != tt.ops || v.UpperThreshold != tt.upper || v.LowerThreshold != tt.lower {
				t.Errorf("netmask /%d, ops %v, thresholds %d/%d; want /%d, %v, %d/%d",
					v.PersistenceNetmask, v.OnePacket, v.UpperThreshold, v.LowerThreshold, tt.mask, tt.ops, tt.upper, tt.lower)
			}
		})
	}
}

func TestServiceOptionsInvalid(t *testing.T) {
	vs := gateVS
	for _, tt := range []struct {
		name string
		src  string
		want []string
	}{
		{"netmask without persistence", vs(`address = "10.0.0.1:80"
persistence_netmask = "255.255.255.0"`), []string{
			`t.hcl:4:23: error: Netmask without persistence; virtual_service "web": persistence_netmask: persistence_netmask groups the clients of a persistent service: set persistence`}},
		{"netmask with persistence 0s", vs(`address = "10.0.0.1:80"
persistence = "0s"
persistence_netmask = "255.255.255.0"`), []string{`t.hcl:5:23: error: Netmask without persistence`}},
		{"a prefix length for ipv4", vs(`address = "10.0.0.1:80"
persistence = "60s"
persistence_netmask = 24`), []string{
			`t.hcl:5:23: error: Invalid persistence netmask; virtual_service "web": persistence_netmask: "24": want a dotted netmask such as "255.255.255.0" for the IPv4 address 10.0.0.1`}},
		{"a mask with holes", vs(`address = "10.0.0.1:80"
persistence = "60s"
persistence_netmask = "255.0.255.0"`), []string{`persistence_netmask: "255.0.255.0": the mask's ones must come first, as in 255.255.255.0`}},
		{"no mask at all", vs(`address = "10.0.0.1:80"
persistence = "60s"
persistence_netmask = "0.0.0.0"`), []string{`persistence_netmask: "0.0.0.0" would put every client on one real server`}},
		{"a dotted mask for ipv6", vs(`address = "[2001:db8::1]:80"
persistence = "60s"
persistence_netmask = "255.255.255.0"`), []string{
			`t.hcl:5:23: error: Invalid persistence netmask; virtual_service "web": persistence_netmask: "255.255.255.0": want a prefix length from 1 to 128 for the IPv6 address 2001:db8::1`}},
		{"an ipv6 prefix of 0", vs(`address = "[2001:db8::1]:80"
persistence = "60s"
persistence_netmask = 0`), []string{`want a prefix length from 1 to 128`}},
		{"an ipv6 prefix of 129", vs(`address = "[2001:db8::1]:80"
persistence = "60s"
persistence_netmask = 129`), []string{`want a prefix length from 1 to 128`}},
		{"ops on tcp", vs(`address = "10.0.0.1:80"
ops = true`), []string{
			`t.hcl:4:7: error: One-packet scheduling needs udp; virtual_service "web": ops: the kernel schedules single packets for UDP only; protocol is tcp`}},
		{"ops on sctp", vs(`address = "10.0.0.1:3868"
protocol = "sctp"
ops = true`), []string{`t.hcl:5:7: error: One-packet scheduling needs udp`}},
		{"a negative threshold", vs(`address = "10.0.0.1:80"
upper_threshold = -1`), []string{
			`t.hcl:4:19: error: Invalid threshold; virtual_service "web": upper_threshold: -1: want a connection count from 0 (none) to 2147483647`}},
		{"a threshold too large", vs(`address = "10.0.0.1:80"
upper_threshold = 10
lower_threshold = 2147483648`), []string{`t.hcl:5:19: error: Invalid threshold; virtual_service "web": lower_threshold: 2147483648`}},
		{"lower above upper", vs(`address = "10.0.0.1:80"
upper_threshold = 10
lower_threshold = 11`), []string{
			`t.hcl:5:19: error: Lower threshold above the upper; virtual_service "web": lower_threshold: 11 is above upper_threshold 10, which the kernel refuses`}},
		{"lower without upper", vs(`address = "10.0.0.1:80"
lower_threshold = 5`), []string{`t.hcl:4:19: error: Lower threshold above the upper; virtual_service "web": lower_threshold: 5 is above upper_threshold 0`}},
		{"a fractional threshold", vs(`address = "10.0.0.1:80"
upper_threshold = 1.5`), []string{`t.hcl:4:19: error: Unsuitable value type`}},
		{"every problem at once", vs(`address = "10.0.0.1:80"
persistence_netmask = "255.255.0.0"
ops = true
lower_threshold = 3`), []string{
			`t.hcl:4:23: error: Netmask without persistence`,
			`t.hcl:5:7: error: One-packet scheduling needs udp`,
			`t.hcl:6:19: error: Lower threshold above the upper`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) { wantDiagnostics(t, tt.src, tt.want) })
	}
}
