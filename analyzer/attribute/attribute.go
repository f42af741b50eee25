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
// queries so far (a resolver; the analyzer names a connection when its flow
// ends, so that is "before the connection ended"). Clients find these servers
// through configuration (DHCP, resolv.conf), not through a lookup, so a DNS
// answer that happens to contain the resolver's address (a lab resolver
// answers every name, some with its own address) must not rename them. SNI
// and Host still win.
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
	// names holds one copy of each name: a capture asks for the same few
	// names over and over, and each answer would otherwise keep its own.
	names map[string]string
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{m: make(map[netip.Addr][]answer), resolvers: make(map[netip.Addr]bool), names: make(map[string]string)}
}

// Add records that at time ts (ns) a DNS answer to a query for name mapped addr.
func (s *Store) Add(addr netip.Addr, ts int64, name string) {
	name = normalize(name)
	if name == "" || !addr.IsValid() {
		return
	}
	if n, ok := s.names[name]; ok {
		name = n
	} else {
		s.names[name] = name
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

// Prune forgets the answers that no Lookup at a time at or after ts can
// return: per address, every answer before the last one at or before ts.
// Memory then follows the answers of a time window, not of the whole capture.
func (s *Store) Prune(ts int64) {
	for a, list := range s.m {
		i := sort.Search(len(list), func(j int) bool { return list[j].ts > ts })
		if i <= 1 {
			continue
		}
		n := copy(list, list[i-1:])
		clear(list[n:]) // release the names
		list = list[:n]
		if n < cap(list)/4 {
			list = append([]answer(nil), list...) // give back a list that grew large once
		}
		s.m[a] = list
	}
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
// IsLocal reports whether a destination name is a bare address that is not
// on the internet: private, loopback, link-local, multicast, broadcast or
// unspecified (the lab's or a home network's router and resolver, DHCP,
// IPv6 neighbour discovery). Such destinations are neither first nor third
// party, and their addresses differ from lab to lab.
func IsLocal(name string) bool {
	a, err := netip.ParseAddr(name)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() ||
		a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || a.IsInterfaceLocalMulticast()
}

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
