package http3

import (
	"errors"
	"fmt"

	"golang.org/x/net/http2/hpack"
)

// errBlocked means a field section refers to dynamic table entries the
// encoder stream has not inserted yet (RFC 9204 2.1.2).
var errBlocked = errors.New("qpack: blocked on the encoder stream")

var errQPACK = errors.New("qpack: malformed")

type field struct{ name, value string }

// staticTable is RFC 9204 Appendix A, indexed from 0.
var staticTable = [...]field{
	{":authority", ""}, {":path", "/"}, {"age", "0"}, {"content-disposition", ""}, {"content-length", "0"},
	{"cookie", ""}, {"date", ""}, {"etag", ""}, {"if-modified-since", ""}, {"if-none-match", ""},
	{"last-modified", ""}, {"link", ""}, {"location", ""}, {"referer", ""}, {"set-cookie", ""},
	{":method", "CONNECT"}, {":method", "DELETE"}, {":method", "GET"}, {":method", "HEAD"}, {":method", "OPTIONS"},
	{":method", "POST"}, {":method", "PUT"}, {":scheme", "http"}, {":scheme", "https"}, {":status", "103"},
	{":status", "200"}, {":status", "304"}, {":status", "404"}, {":status", "503"}, {"accept", "*/*"},
	{"accept", "application/dns-message"}, {"accept-encoding", "gzip, deflate, br"}, {"accept-ranges", "bytes"},
	{"access-control-allow-headers", "cache-control"}, {"access-control-allow-headers", "content-type"},
	{"access-control-allow-origin", "*"}, {"cache-control", "max-age=0"}, {"cache-control", "max-age=2592000"},
	{"cache-control", "max-age=604800"}, {"cache-control", "no-cache"}, {"cache-control", "no-store"},
	{"cache-control", "public, max-age=31536000"}, {"content-encoding", "br"}, {"content-encoding", "gzip"},
	{"content-type", "application/dns-message"}, {"content-type", "application/javascript"},
	{"content-type", "application/json"}, {"content-type", "application/x-www-form-urlencoded"},
	{"content-type", "image/gif"}, {"content-type", "image/jpeg"}, {"content-type", "image/png"},
	{"content-type", "text/css"}, {"content-type", "text/html; charset=utf-8"}, {"content-type", "text/plain"},
	{"content-type", "text/plain;charset=utf-8"}, {"range", "bytes=0-"},
	{"strict-transport-security", "max-age=31536000"},
	{"strict-transport-security", "max-age=31536000; includesubdomains"},
	{"strict-transport-security", "max-age=31536000; includesubdomains; preload"},
	{"vary", "accept-encoding"}, {"vary", "origin"}, {"x-content-type-options", "nosniff"},
	{"x-xss-protection", "1; mode=block"}, {":status", "100"}, {":status", "204"}, {":status", "206"},
	{":status", "302"}, {":status", "400"}, {":status", "403"}, {":status", "421"}, {":status", "425"},
	{":status", "500"}, {"accept-language", ""}, {"access-control-allow-credentials", "FALSE"},
	{"access-control-allow-credentials", "TRUE"}, {"access-control-allow-headers", "*"},
	{"access-control-allow-methods", "get"}, {"access-control-allow-methods", "get, post, options"},
	{"access-control-allow-methods", "options"}, {"access-control-expose-headers", "content-length"},
	{"access-control-request-headers", "content-type"}, {"access-control-request-method", "get"},
	{"access-control-request-method", "post"}, {"alt-svc", "clear"}, {"authorization", ""},
	{"content-security-policy", "script-src 'none'; object-src 'none'; base-uri 'none'"},
	{"early-data", "1"}, {"expect-ct", ""}, {"forwarded", ""}, {"if-range", ""}, {"origin", ""},
	{"purpose", "prefetch"}, {"server", ""}, {"timing-allow-origin", "*"}, {"upgrade-insecure-requests", "1"},
	{"user-agent", ""}, {"x-forwarded-for", ""}, {"x-frame-options", "deny"}, {"x-frame-options", "sameorigin"},
}

// maxTableCapacity bounds the dynamic table a connection may set up,
// whatever its settings say.
const maxTableCapacity = 1 << 20

// table is the dynamic table of one encoder (RFC 9204 3.2): its entries in
// insertion order, the oldest evicted first.
type table struct {
	entries  []field
	dropped  uint64 // entries evicted from the front: absolute index of entries[0]
	size     uint64
	capacity uint64
	maxCap   uint64 // SETTINGS_QPACK_MAX_TABLE_CAPACITY of the decoding peer
}

// inserted is the Insert Count: entries ever inserted.
func (t *table) inserted() uint64 { return t.dropped + uint64(len(t.entries)) }

func (t *table) get(abs uint64) (field, bool) {
	if abs < t.dropped || abs >= t.inserted() {
		return field{}, false
	}
	return t.entries[abs-t.dropped], true
}

func (t *table) insert(f field) error {
	sz := uint64(len(f.name)+len(f.value)) + 32
	if sz > t.capacity {
		return fmt.Errorf("%w: entry of %d bytes over capacity %d", errQPACK, sz, t.capacity)
	}
	t.entries = append(t.entries, f)
	t.size += sz
	t.evict()
	return nil
}

func (t *table) evict() {
	for t.size > t.capacity && len(t.entries) > 0 {
		e := t.entries[0]
		t.size -= uint64(len(e.name)+len(e.value)) + 32
		t.entries[0] = field{}
		t.entries = t.entries[1:]
		t.dropped++
	}
}

// prefixInt reads an integer with an n-bit prefix (RFC 7541 5.1) from b.
func prefixInt(b []byte, n uint) (v uint64, used int, err error) {
	if len(b) == 0 {
		return 0, 0, errShort
	}
	mask := uint64(1)<<n - 1
	v = uint64(b[0]) & mask
	if v < mask {
		return v, 1, nil
	}
	var shift uint
	for i := 1; i < len(b); i++ {
		v += uint64(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return v, i + 1, nil
		}
		shift += 7
		if shift > 56 {
			return 0, 0, fmt.Errorf("%w: integer too long", errQPACK)
		}
	}
	return 0, 0, errShort
}

var errShort = errors.New("qpack: incomplete")

// stringLit reads a string literal whose length has an n-bit prefix, with
// the Huffman flag just above it.
func stringLit(b []byte, n uint) (string, int, error) {
	if len(b) == 0 {
		return "", 0, errShort
	}
	huff := b[0]&(1<<n) != 0
	l, used, err := prefixInt(b, n)
	if err != nil {
		return "", 0, err
	}
	if l > maxString || l > uint64(len(b)-used) {
		if l > maxString {
			return "", 0, fmt.Errorf("%w: string of %d bytes", errQPACK, l)
		}
		return "", 0, errShort
	}
	raw := b[used : used+int(l)]
	if !huff {
		return string(raw), used + int(l), nil
	}
	s, err := hpack.HuffmanDecodeToString(raw)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", errQPACK, err)
	}
	return s, used + int(l), nil
}

const maxString = 64 << 10

// instructions applies encoder stream instructions (RFC 9204 4.3) from b
// and returns how many bytes whole instructions took; the rest waits for
// more stream data.
func (t *table) instructions(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := t.instruction(b[done:])
		if errors.Is(err, errShort) {
			return done, nil
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (t *table) instruction(b []byte) (int, error) {
	switch {
	case b[0]&0x80 != 0: // Insert with name reference
		idx, n, err := prefixInt(b, 6)
		if err != nil {
			return 0, err
		}
		var name string
		if b[0]&0x40 != 0 {
			if idx >= uint64(len(staticTable)) {
				return 0, fmt.Errorf("%w: static index %d", errQPACK, idx)
			}
			name = staticTable[idx].name
		} else {
			if idx >= t.inserted() {
				return 0, fmt.Errorf("%w: relative index %d", errQPACK, idx)
			}
			f, ok := t.get(t.inserted() - 1 - idx)
			if !ok {
				return 0, fmt.Errorf("%w: evicted entry", errQPACK)
			}
			name = f.name
		}
		v, m, err := stringLit(b[n:], 7)
		if err != nil {
			return 0, err
		}
		return n + m, t.insert(field{name, v})
	case b[0]&0x40 != 0: // Insert with literal name
		name, n, err := stringLit(b, 5)
		if err != nil {
			return 0, err
		}
		v, m, err := stringLit(b[n:], 7)
		if err != nil {
			return 0, err
		}
		return n + m, t.insert(field{name, v})
	case b[0]&0x20 != 0: // Set dynamic table capacity
		c, n, err := prefixInt(b, 5)
		if err != nil {
			return 0, err
		}
		if c > t.maxCap || c > maxTableCapacity {
			return 0, fmt.Errorf("%w: capacity %d over %d", errQPACK, c, t.maxCap)
		}
		t.capacity = c
		t.evict()
		return n, nil
	default: // Duplicate
		idx, n, err := prefixInt(b, 5)
		if err != nil {
			return 0, err
		}
		if idx >= t.inserted() {
			return 0, fmt.Errorf("%w: relative index %d", errQPACK, idx)
		}
		f, ok := t.get(t.inserted() - 1 - idx)
		if !ok {
			return 0, fmt.Errorf("%w: evicted entry", errQPACK)
		}
		return n, t.insert(f)
	}
}

// section decodes an encoded field section (RFC 9204 4.5) and calls emit
// for each field line; errBlocked when it needs entries not inserted yet.
func (t *table) section(b []byte, emit func(name, value string)) error {
	enc, n, err := prefixInt(b, 8)
	if err != nil {
		return fmt.Errorf("%w: section prefix", errQPACK)
	}
	b = b[n:]
	ric := uint64(0)
	if enc > 0 {
		maxEntries := t.maxCap / 32
		full := 2 * maxEntries
		if full == 0 || enc > full {
			return fmt.Errorf("%w: required insert count", errQPACK)
		}
		maxValue := t.inserted() + maxEntries
		ric = maxValue/full*full + enc - 1
		if ric > maxValue {
			if ric <= full {
				return fmt.Errorf("%w: required insert count", errQPACK)
			}
			ric -= full
		}
		if ric == 0 {
			return fmt.Errorf("%w: required insert count", errQPACK)
		}
	}
	if ric > t.inserted() {
		return errBlocked
	}
	if len(b) == 0 {
		return fmt.Errorf("%w: section prefix", errQPACK)
	}
	neg := b[0]&0x80 != 0
	delta, n, err := prefixInt(b, 7)
	if err != nil {
		return fmt.Errorf("%w: section prefix", errQPACK)
	}
	b = b[n:]
	base := ric + delta
	if neg {
		if delta+1 > ric {
			return fmt.Errorf("%w: base", errQPACK)
		}
		base = ric - delta - 1
	}
	dyn := func(abs uint64) (field, error) {
		if abs >= ric {
			return field{}, fmt.Errorf("%w: index %d past the required insert count", errQPACK, abs)
		}
		f, ok := t.get(abs)
		if !ok {
			return field{}, fmt.Errorf("%w: dynamic entry %d gone", errQPACK, abs)
		}
		return f, nil
	}
	for len(b) > 0 {
		var f field
		var used int
		switch {
		case b[0]&0x80 != 0: // Indexed field line
			idx, n, err := prefixInt(b, 6)
			if err != nil {
				return fmt.Errorf("%w: field line", errQPACK)
			}
			if b[0]&0x40 != 0 {
				if idx >= uint64(len(staticTable)) {
					return fmt.Errorf("%w: static index %d", errQPACK, idx)
				}
				f = staticTable[idx]
			} else {
				if idx >= base {
					return fmt.Errorf("%w: relative index %d", errQPACK, idx)
				}
				if f, err = dyn(base - 1 - idx); err != nil {
					return err
				}
			}
			used = n
		case b[0]&0x40 != 0: // Literal with name reference
			idx, n, err := prefixInt(b, 4)
			if err != nil {
				return fmt.Errorf("%w: field line", errQPACK)
			}
			if b[0]&0x10 != 0 {
				if idx >= uint64(len(staticTable)) {
					return fmt.Errorf("%w: static index %d", errQPACK, idx)
				}
				f.name = staticTable[idx].name
			} else {
				if idx >= base {
					return fmt.Errorf("%w: relative index %d", errQPACK, idx)
				}
				d, err := dyn(base - 1 - idx)
				if err != nil {
					return err
				}
				f.name = d.name
			}
			v, m, err := stringLit(b[n:], 7)
			if err != nil {
				return fmt.Errorf("%w: field value", errQPACK)
			}
			f.value, used = v, n+m
		case b[0]&0x20 != 0: // Literal with literal name
			name, n, err := stringLit(b, 3)
			if err != nil {
				return fmt.Errorf("%w: field name", errQPACK)
			}
			v, m, err := stringLit(b[n:], 7)
			if err != nil {
				return fmt.Errorf("%w: field value", errQPACK)
			}
			f, used = field{name, v}, n+m
		case b[0]&0x10 != 0: // Indexed field line with post-base index
			idx, n, err := prefixInt(b, 4)
			if err != nil {
				return fmt.Errorf("%w: field line", errQPACK)
			}
			if f, err = dyn(base + idx); err != nil {
				return err
			}
			used = n
		default: // Literal with post-base name reference
			idx, n, err := prefixInt(b, 3)
			if err != nil {
				return fmt.Errorf("%w: field line", errQPACK)
			}
			d, err := dyn(base + idx)
			if err != nil {
				return err
			}
			v, m, err := stringLit(b[n:], 7)
			if err != nil {
				return fmt.Errorf("%w: field value", errQPACK)
			}
			f, used = field{d.name, v}, n+m
		}
		emit(f.name, f.value)
		b = b[used:]
	}
	return nil
}
