package simnet

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// namePool hands every DNS name its own address from a prefix. The address is
// a hash of the name, so the same name gets the same address in every run
// (diffs and repeated runs line up); a collision moves to the next free one.
type namePool struct {
	prefix netip.Prefix
	size   uint32 // usable host addresses
	mu     sync.Mutex
	byName map[string]netip.Addr
	byAddr map[netip.Addr]string
}

func newNamePool(p netip.Prefix) *namePool {
	return &namePool{
		prefix: p,
		size:   uint32(1)<<(32-p.Bits()) - 2, // no network or broadcast address
		byName: map[string]netip.Addr{},
		byAddr: map[netip.Addr]string{},
	}
}

func (p *namePool) addr(name string) netip.Addr {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byName[name]; ok {
		return a
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	base := binary.BigEndian.Uint32(p.prefix.Addr().AsSlice())
	start := h.Sum32() % p.size
	for i := uint32(0); i < p.size; i++ {
		a := uint32ToAddr(base + 1 + (start+i)%p.size)
		if _, taken := p.byAddr[a]; !taken {
			p.byName[name], p.byAddr[a] = a, name
			return a
		}
	}
	// Every address is taken (more names than the pool holds): share.
	return uint32ToAddr(base + 1 + start)
}

// reverse answers a PTR name (d.c.b.a.in-addr.arpa.) with the name that owns the address.
func (p *namePool) reverse(ptr string) (string, bool) {
	labels := strings.Split(strings.TrimSuffix(strings.ToLower(ptr), ".in-addr.arpa."), ".")
	if len(labels) != 4 {
		return "", false
	}
	var b [4]byte
	for i, l := range labels {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 || n > 255 {
			return "", false
		}
		b[3-i] = byte(n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	name, ok := p.byAddr[netip.AddrFrom4(b)]
	if !ok {
		return "", false
	}
	return name + ".", true
}

func uint32ToAddr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
