package config

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/lvs-sync/lvs-sync/lvs"
)

func TestFirewallMark(t *testing.T) {
	cfg, err := Parse([]byte(`
virtual_service "web" {
  fwmark      = 1
  vips        = ["10.0.0.1", "10.0.0.2"]
  forwarding  = "gate"
  persistence = "300s"
  fallback    = "10.0.0.9"
}
virtual_service "web6" {
  fwmark     = 1
  family     = "ipv6"
  vips       = ["2001:db8::1"]
  forwarding = "masq"
}
virtual_service "api" {
  address    = "10.0.0.1:8080"
  forwarding = "masq"
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	web, web6, api := cfg.VirtualService("web"), cfg.VirtualService("web6"), cfg.VirtualService("api")
	mark4 := lvs.ServiceKey{FWMark: 1, Addr: netip.IPv4Unspecified()}
	mark6 := lvs.ServiceKey{FWMark: 1, Addr: netip.IPv6Unspecified()}
	if web.Key() != mark4 || web6.Key() != mark6 {
		t.Errorf("keys %+v %+v, want %+v %+v", web.Key(), web6.Key(), mark4, mark6)
	}
	if cfg.VirtualServiceAt(mark4) != web || cfg.VirtualServiceAt(mark6) != web6 {
		t.Error("the same mark in two families is not two services")
	}
	if web.Protocol != 0 || web.Address != netip.MustParseAddrPort("0.0.0.0:0") || web6.Address != netip.MustParseAddrPort("[::]:0") {
		t.Errorf("a mark's protocol %v and family addresses %v %v", web.Protocol, web.Address, web6.Address)
	}
	want := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}
	if !slices.Equal(web.VIPAddrs(), want) {
		t.Errorf("web's VIPs %v, want %v", web.VIPAddrs(), want)
	}
	if got := api.VIPAddrs(); !slices.Equal(got, want[:1]) || api.VIPs != nil {
		t.Errorf("an address service's VIPs %v (field %v), want its address alone", got, api.VIPs)
	}
	// Without vip_interface or ha the VIPs are the operator's: vips may
	// be left out, as an ldirectord import has none.
	bare, err := Parse([]byte("virtual_service \"m\" {\n  fwmark = 7\n  forwarding = \"gate\"\n}\n"), "t.hcl")
	if err != nil {
		t.Fatalf("a mark without vips and no VIP link: %v", err)
	}
	if m := bare.VirtualService("m"); m.FWMark != 7 || len(m.VIPAddrs()) != 0 {
		t.Errorf("mark %d VIPs %v, want 7 and none", m.FWMark, m.VIPAddrs())
	}
	if web.Fallback.String() != "10.0.0.9" || web.Fallback.Addr != netip.MustParseAddrPort("10.0.0.9:0") {
		t.Errorf("fallback %v (%v), want 10.0.0.9 on port 0", web.Fallback, web.Fallback.Addr)
	}
}

func TestFirewallMarkInvalid(t *testing.T) {
	vs := func(name, body string) string {
		return "virtual_service \"" + name + "\" {\nforwarding = \"gate\"\n" + body + "\n}\n"
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"address and mark", vs("web", `address = "10.0.0.1:80"
fwmark = 1`), []string{`t.hcl:4:10: error: Address and firewall mark; virtual_service "web": fwmark: a virtual service is an address or a firewall mark`}},
		{"mark 0", vs("web", `fwmark = 0
vips = ["10.0.0.1"]`), []string{`t.hcl:3:10: error: Invalid firewall mark; virtual_service "web": fwmark: 0: want 1 to 4294967295`}},
		{"mark too big", vs("web", `fwmark = 4294967296
vips = ["10.0.0.1"]`), []string{`t.hcl:3:10: error: Invalid firewall mark`}},
		{"protocol with a mark", vs("web", `fwmark = 1
protocol = "tcp"
vips = ["10.0.0.1"]`), []string{`t.hcl:4:12: error: Protocol with a firewall mark; virtual_service "web": protocol: a fwmark service takes every packet`}},
		{"bad family", vs("web", `fwmark = 1
family = "inet"
vips = ["10.0.0.1"]`), []string{`t.hcl:4:10: error: Invalid address family; virtual_service "web": family: "inet": want "ipv4" or "ipv6"`}},
		{"no vips with vip_interface", "director {\n  vip_interface = \"lvs0\"\n}\n" + vs("web", `fwmark = 1`),
			[]string{`t.hcl:4:1: error: Missing VIPs; virtual_service "web": vips: the director puts the VIPs on (vip_interface or ha)`}},
		{"empty vips with ha", "director {\n  ha {\n    lock_key = \"lvs/lock\"\n    interface = \"eth0\"\n  }\n}\n" + vs("web", `fwmark = 1
vips = []`), []string{`t.hcl:7:1: error: Missing VIPs`}},
		{"vip of the other family", vs("web", `fwmark = 1
vips = ["10.0.0.1", "2001:db8::1"]`), []string{`t.hcl:4:8: error: Mixed address families; virtual_service "web": vips: 2001:db8::1 is not of the family ipv4`}},
		{"ipv4 vip of an ipv6 mark", vs("web", `fwmark = 1
family = "ipv6"
vips = ["10.0.0.1"]`), []string{`vips: 10.0.0.1 is not of the family ipv6`}},
		{"vip not an address", vs("web", `fwmark = 1
vips = ["10.0.0.1:80"]`), []string{`t.hcl:4:8: error: Invalid VIP; virtual_service "web": vips: "10.0.0.1:80" is not an IP address`}},
		{"multicast vip", vs("web", `fwmark = 1
vips = ["224.0.0.1"]`), []string{`must be a unicast address`}},
		{"vip twice", vs("web", `fwmark = 1
vips = ["10.0.0.1", "10.0.0.1"]`), []string{`t.hcl:4:8: error: Duplicate VIP; virtual_service "web": vips: 10.0.0.1 is listed twice`}},
		{"vips of an address service", vs("web", `address = "10.0.0.1:80"
vips = ["10.0.0.1"]`), []string{`t.hcl:4:8: error: Only for a firewall mark; virtual_service "web": vips: vips is for fwmark services`}},
		{"family of an address service", vs("web", `address = "10.0.0.1:80"
family = "ipv4"`), []string{`t.hcl:4:10: error: Only for a firewall mark; virtual_service "web": family:`}},
		{"the same mark twice", vs("web", `fwmark = 1
vips = ["10.0.0.1"]`) + vs("www", `fwmark = 1
vips = ["10.0.0.2"]`), []string{`t.hcl:6:1: error: Duplicate virtual address; virtual_service "www": fwmark:1 is already served by virtual_service "web"`}},
		{"local fallback", vs("web", `fwmark = 1
vips = ["10.0.0.1"]
fallback = "local"`), []string{`t.hcl:5:12: error: Local fallback with a firewall mark; virtual_service "web": fallback: the local maintenance page listens on one VIP:port`}},
		{"fallback with a port", vs("web", `fwmark = 1
vips = ["10.0.0.1"]
fallback = "10.0.0.9:80"`), []string{`t.hcl:5:12: error: Invalid fallback; virtual_service "web": fallback: a fwmark service's fallback is an IP address alone`}},
		{"fallback of the other family", vs("web", `fwmark = 1
vips = ["10.0.0.1"]
fallback = "2001:db8::9"`), []string{`t.hcl:5:12: error: Mixed address families; virtual_service "web": fallback: fallback 2001:db8::9 is not of the family ipv4`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantDiagnostics(t, tt.src, tt.want) })
	}
}
