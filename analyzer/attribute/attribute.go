// Package attribute maps IP addresses to the names DNS answers gave them, and
// picks a connection's name with a fixed precedence:
//
//  1. the TLS server name (SNI, also from QUIC),
//  2. the HTTP Host header,
//  3. the query name of the DNS answer (A/AAAA, CNAME chains followed back to
//     the name the client asked for) that most recently before the
//     connection's start mapped the responder's address, except for
//     infrastructure connections (below),
//  4. the bare responder IP.
//
// Infrastructure connections keep their address at step 3: connections whose
// service is dns or dhcp, and any connection to an address seen answering DNS
// queries (a resolver). Clients find these servers through configuration
// (DHCP, resolv.conf), not through a lookup, so a DNS answer that happens to
// contain the resolver's address (a lab resolver answers every name, some with
// its own address) must not rename them. SNI and Host still win.
//
// Names that are IP literals do not count as names at steps 1 and 2.
package attribute

import (
	"net/netip"
	"sort"
	"strings"
)

// Sources, as reported in Conn.NameSource.
const (
	SourceSNI      = "sni"
	SourceHTTPHost = "http_host"
	SourceDNS      = "dns"
	SourceIP       = "ip"
)

type answer struct {
	ts   int64
	name string
}

// Store holds every address → name mapping seen in DNS answers.
type Store struct {
	// Each list is ordered by time, answers with equal times in insertion
	// order, so Lookup is a binary search.
	m         map[netip.Addr][]answer
	resolvers map[netip.Addr]bool
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{m: make(map[netip.Addr][]answer), resolvers: make(map[netip.Addr]bool)}
}

// Add records that at time ts (ns) a DNS answer to a query for name mapped addr.
func (s *Store) Add(addr netip.Addr, ts int64, name string) {
	name = normalize(name)
	if name == "" || !addr.IsValid() {
		return
	}
	addr = addr.Unmap()
	list := s.m[addr]
	// Answers mostly arrive in time order: append; otherwise insert after
	// every answer at or before ts (keeps insertion order among equal times).
	i := len(list)
	if i > 0 && list[i-1].ts > ts {
		i = sort.Search(len(list), func(j int) bool { return list[j].ts > ts })
	}
	list = append(list, answer{})
	copy(list[i+1:], list[i:])
	list[i] = answer{ts: ts, name: name}
	s.m[addr] = list
}

// AddResolver records that addr answered DNS queries.
func (s *Store) AddResolver(addr netip.Addr) {
	if addr.IsValid() {
		s.resolvers[addr.Unmap()] = true
	}
}

// IsResolver reports whether addr was seen answering DNS queries.
func (s *Store) IsResolver(addr netip.Addr) bool { return s.resolvers[addr.Unmap()] }

// Lookup returns the name of the most recent answer at or before ts for addr
// (the later one added among answers with the same time). It takes
// O(log n) for n answers naming addr.
func (s *Store) Lookup(addr netip.Addr, ts int64) (string, bool) {
	list := s.m[addr.Unmap()]
	i := sort.Search(len(list), func(j int) bool { return list[j].ts > ts })
	if i == 0 {
		return "", false
	}
	return list[i-1].name, true
}

// Name picks the name for a connection to resp starting at ts; service is the
// connection's Zeek service ("dns", "dhcp", … or "").
func (s *Store) Name(sni, httpHost string, resp netip.Addr, ts int64, service string) (name, source string) {
	if n := normalize(sni); n != "" && !isIP(n) {
		return n, SourceSNI
	}
	if n := normalize(httpHost); n != "" && !isIP(n) {
		return n, SourceHTTPHost
	}
	infra := service == "dns" || service == "dhcp" || s.IsResolver(resp)
	if !infra {
		if n, ok := s.Lookup(resp, ts); ok {
			return n, SourceDNS
		}
	}
	return resp.Unmap().String(), SourceIP
}

func normalize(n string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
}

func isIP(s string) bool {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	_, err := netip.ParseAddr(s)
	return err == nil
}

// IsFirstParty reports whether name equals or is a subdomain of one of the domains.
func IsFirstParty(name string, domains []string) bool {
	name = normalize(name)
	for _, d := range domains {
		d = normalize(d)
		if d == "" {
			continue
		}
		if name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}
