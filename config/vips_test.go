package config

import (
	"fmt"
	"testing"
)

// TestVIPs: every service's addresses, a mark's vips among them, sorted
// and each once.
func TestVIPs(t *testing.T) {
	cfg, err := Parse([]byte(`
virtual_service "b" {
  address = "10.0.0.2:80"
  forwarding = "gate"
}
virtual_service "a" {
  address = "10.0.0.2:443"
  forwarding = "gate"
}
virtual_service "m" {
  fwmark = 7
  forwarding = "gate"
  vips   = ["10.0.0.3", "10.0.0.1"]
}
virtual_service "v6" {
  address = "[2001:db8::1]:80"
  forwarding = "gate"
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.VIPs()); got != "[10.0.0.1 10.0.0.2 10.0.0.3 2001:db8::1]" {
		t.Errorf("VIPs %s", got)
	}
}
