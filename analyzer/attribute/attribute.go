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

// Store holds every address → name mapping seen in DNS answers. It is not
// safe for concurrent use, not even for Name alone (it caches).
type Store struct {
	// Each list is ordered by time, answers with equal times in insertion
	// order, so Lookup is a binary search. The map holds pointers so that Add
	// and Prune update a list in place, without a second map access.
	m         map[netip.Addr]*[]answer
	resolvers map[netip.Addr]bool
	// The last address added per family (A and AAAA answers alternate) and
	// the last resolver: answers come from the same resolver and often name
	// the same address, and comparing is cheaper than hashing for a map.
	lastAddr     [2]netip.Addr
	lastList     [2]*[]answer
	lastResolver netip.Addr
	// The last address Name returned as a name, formatted: many connections
	// in a row (DNS queries above all) go to the same resolver.
	lastIP    netip.Addr
	lastIPStr string
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{m: make(map[netip.Addr]*[]answer), resolvers: make(map[netip.Addr]bool)}
}

// Add records that at time ts (ns) a DNS answer to a query for name mapped addr.
func (s *Store) Add(addr netip.Addr, ts int64, name string) {
	name = normalize(name)
	if name == "" || !addr.IsValid() {
		return
	}
	addr = addr.Unmap()
	fam := 0
	if addr.Is6() {
		fam = 1
	}
	p := s.lastList[fam]
	if addr != s.lastAddr[fam] || p == nil {
		p = s.m[addr]
		if p == nil {
			p = new([]answer)
			s.m[addr] = p
		}
		s.lastAddr[fam], s.lastList[fam] = addr, p
	}
	list := *p
	// Answers mostly arrive in time order: append; otherwise insert after
	// every answer at or before ts (keeps insertion order among equal times).
	i := len(list)
	if i > 0 && list[i-1].ts > ts {
		i = sort.Search(len(list), func(j int) bool { return list[j].ts > ts })
	}
	if i > 0 && list[i-1].name == name {
		// An address is mostly answered for the same name over and over:
		// keep one copy (the analyzer's names are shared already).
		name = list[i-1].name
	}
	list = append(list, answer{})
	copy(list[i+1:], list[i:])
	list[i] = answer{ts: ts, name: name}
	*p = list
}

// Prune forgets the answers that no Lookup at a time at or after ts can
// return: per address, every answer before the last one at or before ts.
// Memory then follows the answers of a time window, not of the whole capture.
// It keeps every address's entry (Add holds pointers to recent ones).
func (s *Store) Prune(ts int64) {
	for _, p := range s.m {
		list := *p
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
		*p = list
	}
}

// AddResolver records that addr answered DNS queries.
func (s *Store) AddResolver(addr netip.Addr) {
	if a := addr.Unmap(); a != s.lastResolver && a.IsValid() {
		s.resolvers[a] = true
		s.lastResolver = a
	}
}

// IsResolver reports whether addr was seen answering DNS queries.
func (s *Store) IsResolver(addr netip.Addr) bool { return s.resolvers[addr.Unmap()] }

// Lookup returns the name of the most recent answer at or before ts for addr
// (the later one added among answers with the same time). It takes
// O(log n) for n answers naming addr.
func (s *Store) Lookup(addr netip.Addr, ts int64) (string, bool) {
	var list []answer
	if p := s.m[addr.Unmap()]; p != nil {
		list = *p
	}
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
	infra := service == "dns" || service == "dhcp" || service == "dhcpv6" || s.IsResolver(resp)
	if !infra {
		if n, ok := s.Lookup(resp, ts); ok {
			return n, SourceDNS
		}
	}
	if a := resp.Unmap(); a != s.lastIP || s.lastIPStr == "" {
		s.lastIP, s.lastIPStr = a, a.String()
	}
	return s.lastIPStr, SourceIP
}

func normalize(n string) string {
	if isNormal(n) {
		return n // the usual case, as DNS answers give names: no copy
	}
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
}

// isNormal reports whether normalize leaves n as it is: ASCII without upper
// case, without surrounding space and without a trailing dot.
func isNormal(n string) bool {
	if n == "" {
		return true
	}
	if isASCIISpace(n[0]) || isASCIISpace(n[len(n)-1]) || n[len(n)-1] == '.' {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c >= 0x80 || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

func isASCIISpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isIP(s string) bool {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	// Without a colon only a dotted quad can parse, and most names are not:
	// skip ParseAddr, which allocates its error.
	if !strings.Contains(s, ":") && strings.ContainsFunc(s, func(r rune) bool { return r != '.' && (r < '0' || r > '9') }) {
		return false
	}
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
