package simnet

import (
	"github.com/firstboot/firstboot/internal/testenv"
	"net/netip"
	"testing"
)

// The kernel's answers are exercised by TestRedirectInNamespace; this only
// makes sure the parser survives any bytes.
func FuzzParseCtReply(f *testing.F) {
	req := ctGetRequest(1, netip.MustParseAddrPort("10.0.0.1:53"), netip.MustParseAddrPort("10.0.0.2:5353"))
	f.Add(req)
	f.Add(req[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		parseCtReply(b)
	})
}

func TestConntrackNoEntry(t *testing.T) {
	ct, err := openConntrack()
	if err != nil {
		testenv.Missing(t, "conntrack netlink unavailable: %v", err)
	}
	defer ct.Close()
	// Nothing was ever sent between these addresses: no entry, no hang.
	if d, ok := ct.origDstUDP(netip.MustParseAddrPort("127.0.0.1:9"), netip.MustParseAddrPort("127.0.0.1:9")); ok {
		t.Errorf("found an entry that cannot exist: %v", d)
	}
}
