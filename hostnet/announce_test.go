package hostnet

import (
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"
)

var testMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01}

// TestGARPFrame: a broadcast Ethernet frame carrying an ARP request whose
// sender and target are the VIP (what Linux takes as gratuitous and lets
// override an entry within its locktime), from the link's address.
func TestGARPFrame(t *testing.T) {
	got := hex.EncodeToString(garpFrame(testMAC, netip.MustParseAddr("10.4.0.50")))
	want := "ffffffffffff" + "02005e100001" + "0806" + // Ethernet: to all, from the link, ARP
		"0001" + "0800" + "06" + "04" + "0001" + // Ethernet/IPv4, a request
		"02005e100001" + "0a040032" + // sender: the link, the VIP
		"000000000000" + "0a040032" + // target: the VIP
		strings.Repeat("00", 18) // padding to 60 bytes
	if got != want {
		t.Errorf("frame\n got %s\nwant %s", got, want)
	}
}

// TestNAMessage: a neighbour advertisement with override set and
// solicited clear (an unsolicited one, which updates an entry), the VIP
// as target and the link's address in the target link-layer option.
func TestNAMessage(t *testing.T) {
	got := hex.EncodeToString(naMessage(testMAC, netip.MustParseAddr("2001:db8::50")))
	want := "88" + "00" + "0000" + // type 136, code 0, checksum (the kernel's)
		"20000000" + // override
		"20010db8000000000000000000000050" +
		"02" + "01" + "02005e100001" // target link-layer address, 8 bytes
	if got != want {
		t.Errorf("message\n got %s\nwant %s", got, want)
	}
}

// TestAnnounceNamesLinkAndAddress: a link that is not there fails the
// call with an error naming it and the addresses.
func TestAnnounceNamesLinkAndAddress(t *testing.T) {
	err := NewAnnouncer(nil).Announce("nosuch9", []netip.Addr{netip.MustParseAddr("10.4.0.50")})
	if err == nil || !strings.Contains(err.Error(), "nosuch9") || !strings.Contains(err.Error(), "10.4.0.50") {
		t.Errorf("announce on a missing link: %v", err)
	}
	if err := NewAnnouncer(nil).Announce("nosuch9", nil); err != nil {
		t.Errorf("announcing nothing: %v", err)
	}
}
