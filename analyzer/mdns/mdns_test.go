package mdns

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/firstboot/firstboot/analyzer/dns"
)

func TestItems(t *testing.T) {
	probe := &dns.Full{Message: dns.Message{Questions: []dns.Question{{Name: "fbhost.local"}, {Name: "2.0.79.10.in-addr.arpa"},
		{Name: `my\032printer._ipp._tcp.local`}}}, Authority: []dns.RR{{Name: "fbhost.local", Type: dns.TypeA, Data: "10.79.0.2",
		Addr: netip.MustParseAddr("10.79.0.2")}}}
	if Kind(probe) != Probe {
		t.Errorf("kind %s", Kind(probe))
	}
	want := []Item{{"hostname", "fbhost.local"}, {"service_instance", "my printer._ipp._tcp.local"}, {"address", "10.79.0.2"}}
	if got := Items(probe); !slices.Equal(got, want) {
		t.Errorf("probe items %v, want %v", got, want)
	}
	ann := &dns.Full{Message: dns.Message{Response: true, Answers: []dns.RR{
		{Name: "_services._dns-sd._udp.local", Type: dns.TypePTR, Data: "_ipp._tcp.local"},
		{Name: "_universal._sub._ipp._tcp.local", Type: dns.TypePTR, Data: `my\032printer._ipp._tcp.local`},
		{Name: `my\032printer._ipp._tcp.local`, Type: dns.TypeSRV, Data: "0 0 631 fbhost.local"},
		{Name: `my\032printer._ipp._tcp.local`, Type: dns.TypeTXT, Data: `"ty=Model 9000" "note=a\"b"`},
		{Name: "2.0.79.10.in-addr.arpa", Type: dns.TypePTR, Data: "fbhost.local"},
		{Name: "fbhost.local", Type: dns.TypeHINFO, Data: `"X86_64" "LINUX"`},
	}}}
	if Kind(ann) != Announcement {
		t.Errorf("kind %s", Kind(ann))
	}
	want = []Item{{"service_type", "_ipp._tcp.local"}, {"service_instance", "my printer._ipp._tcp.local"},
		{"hostname", "fbhost.local"}, {"txt", "ty=Model 9000"}, {"txt", `note=a"b`}, {"hinfo", "X86_64 LINUX"}}
	if got := Items(ann); !slices.Equal(got, want) {
		t.Errorf("announcement items %v, want %v", got, want)
	}
	q := &dns.Full{Message: dns.Message{Questions: []dns.Question{{Name: "_googlecast._tcp.local"}}}}
	if got := Items(q); Kind(q) != Query || !slices.Equal(got, []Item{{"query", "_googlecast._tcp.local"}}) {
		t.Errorf("query %s %v", Kind(q), got)
	}
}
