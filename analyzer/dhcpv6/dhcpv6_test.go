package dhcpv6

import (
	"encoding/hex"
	"testing"
)

func TestParse(t *testing.T) {
	// A relayed SOLICIT: relay-forw (hop, link, peer) holding a relay
	// message option with a SOLICIT: client id (DUID-LL), a partial FQDN,
	// a vendor class, an IA_PD asking nothing, an option request.
	solicit, _ := hex.DecodeString("01abcdef" +
		"0001000a00030001020000000001" +
		"0027000600" + "04686f7374" + // client FQDN: flags, a partial name (no root label)
		"0010000e0000013700086d73667420352e30" +
		"0019000c000000010000000000000000" +
		"0006000400170018")
	relay := append([]byte{12, 0}, make([]byte, 32)...)
	relay = append(relay, 0, 9, byte(len(solicit)>>8), byte(len(solicit)))
	relay = append(relay, solicit...)
	m, err := Parse(relay)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Relayed || m.Type != 1 || m.XID != 0xabcdef || DUIDMAC(m.ClientID).String() != "02:00:00:00:00:01" ||
		m.FQDN != "host" || m.VendorClass != "311:msft 5.0" || len(m.ORO) != 2 {
		t.Errorf("%+v", m)
	}
	if TypeName(m.Type) != "SOLICIT" || !FromClient(m.Type) || TypeName(99) != "TYPE_99" {
		t.Error("type names")
	}
	for n := range len(relay) {
		Parse(relay[:n]) // every cut: an error or what was read, never a panic
	}
}
