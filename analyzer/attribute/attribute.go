// Package attribute maps IP addresses to the names DNS answers gave them, and
// picks a connection's name with a fixed precedence:
//
//  1. the TLS server name (SNI, also from QUIC),
//  2. the HTTP Host header,
//  3. the query name of the DNS answer (A/AAAA, CNAME chains followed back to
//     the name the client asked for) that most recently before the
//     connection's start mapped the responder's address,
//  4. the bare responder IP.
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
	seq  int // insertion order, breaks ties between answers with the same time
	name string
}

// Store holds every address → name mapping seen in DNS answers.
type Store struct {
	m   map[netip.Addr][]answer
	seq int
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{m: make(map[netip.Addr][]answer)} }

// Add records that at time ts (ns) a DNS answer to a query for name mapped addr.
func (s *Store) Add(addr netip.Addr, ts int64, name string) {
	name = normalize(name)
	if name == "" || !addr.IsValid() {
		return
	}
	addr = addr.Unmap()
	list := s.m[addr]
	s.seq++
	s.m[addr] = append(list, answer{ts: ts, seq: s.seq, name: name})
}

// Lookup returns the name of the most recent answer at or before ts for addr.
func (s *Store) Lookup(addr netip.Addr, ts int64) (string, bool) {
	list := s.m[addr.Unmap()]
	best := -1
	for i, a := range list {
		if a.ts > ts {
			continue
		}
		if best < 0 || a.ts > list[best].ts || (a.ts == list[best].ts && a.seq > list[best].seq) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	return list[best].name, true
}

// Sort orders each address's answers by time, for Lookup to stay cheap
// whatever order the capture delivered them in. Optional.
func (s *Store) Sort() {
	for _, list := range s.m {
		sort.SliceStable(list, func(i, j int) bool { return list[i].ts < list[j].ts })
	}
}

// Name picks the name for a connection to resp starting at ts.
func (s *Store) Name(sni, httpHost string, resp netip.Addr, ts int64) (name, source string) {
	if n := normalize(sni); n != "" && !isIP(n) {
		return n, SourceSNI
	}
	if n := normalize(httpHost); n != "" && !isIP(n) {
		return n, SourceHTTPHost
	}
	if n, ok := s.Lookup(resp, ts); ok {
		return n, SourceDNS
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
