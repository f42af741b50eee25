package dataset

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

var (
	reMAC  = regexp.MustCompile(`\b[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){4}\b`)
	reIPv4 = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b(/\d{1,2})?`)
	reIPv6 = regexp.MustCompile(`[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}`)
)

// text replaces the lab identifiers in free text (logs, manifest strings,
// packet comments): mapped MACs (keeping the separator and case), lab IPv4
// addresses (and the lab subnet in CIDR form), mapped IPv6 addresses, and the
// hostname as a whole token in any case.
func (an *anonymizer) text(s string) string {
	s = reMAC.ReplaceAllStringFunc(s, func(m string) string {
		hw, err := net.ParseMAC(m)
		if err != nil || len(hw) != 6 {
			return m
		}
		p, ok := an.macs[[6]byte(hw)]
		if !ok {
			return m
		}
		out := net.HardwareAddr(p[:]).String()
		if m[2] == '-' {
			out = strings.ReplaceAll(out, ":", "-")
		}
		if strings.ToUpper(m) == m {
			out = strings.ToUpper(out)
		}
		return out
	})
	s = replaceIndexed(s, reIPv4, func(m string, before, after byte) string {
		if before == '.' || (after == '.') {
			return m
		}
		addrPart, bits, hasBits := strings.Cut(m, "/")
		a, err := netip.ParseAddr(addrPart)
		if err != nil || !a.Is4() || !an.isLab4(a) {
			return m
		}
		if hasBits {
			if n, err := strconv.Atoi(bits); err == nil && an.subnet.IsValid() && n == an.subnet.Bits() && a == an.subnet.Addr() {
				return an.pseudoNet.String()
			}
			return an.map4(a).String() + "/" + bits
		}
		return an.map4(a).String()
	})
	s = replaceIndexed(s, reIPv6, func(m string, _, _ byte) string {
		a, err := netip.ParseAddr(m)
		if err != nil || !a.Is6() {
			return m
		}
		if p := an.map6(a); p != a {
			return p.String()
		}
		return m
	})
	return an.hostText(s)
}

// replaceIndexed is ReplaceAllStringFunc that also shows the bytes around a match.
func replaceIndexed(s string, re *regexp.Regexp, f func(m string, before, after byte) string) string {
	idx := re.FindAllStringIndex(s, -1)
	if idx == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, ix := range idx {
		var before, after byte
		if ix[0] > 0 {
			before = s[ix[0]-1]
		}
		if ix[1] < len(s) {
			after = s[ix[1]]
		}
		b.WriteString(s[last:ix[0]])
		b.WriteString(f(s[ix[0]:ix[1]], before, after))
		last = ix[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// isNameByte says whether c continues a word. Hyphens do not: the hostname
// inside "fb-myhost" or "myhost-install" is replaced too (privacy before
// readability).
func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (an *anonymizer) hostText(s string) string {
	n := len(an.host)
	if n == 0 || len(s) < n {
		return s
	}
	lower := asciiLower(s)
	h := string(an.host)
	var b strings.Builder
	last := 0
	for i := 0; i+n <= len(s); {
		j := strings.Index(lower[i:], h)
		if j < 0 {
			break
		}
		at := i + j
		if (at == 0 || !isNameByte(s[at-1])) && (at+n == len(s) || !isNameByte(s[at+n])) {
			b.WriteString(s[last:at])
			b.Write(an.pseudo)
			last = at + n
		}
		i = at + n
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// strings walks every string field (also in slices, maps and nested structs)
// of the value v points to and replaces it with f(s).
func replaceStrings(v reflect.Value, f func(string) string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			replaceStrings(v.Elem(), f)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				replaceStrings(v.Field(i), f)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			replaceStrings(v.Index(i), f)
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(f(v.String()))
		}
	}
}

// anonymizeCapture rewrites src into dst. Packet data keeps its length;
// comments and interface addresses are rewritten; name-resolution blocks and
// blocks of unknown type are dropped (they may name lab hosts); the count of
// dropped blocks is returned.
func (an *anonymizer) anonymizeCapture(src, dst string) (dropped int, err error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	cr, err := newCapReader(in, src)
	if err != nil {
		return 0, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	w := bufio.NewWriterSize(out, 1<<16)
	if !cr.pcapng {
		if _, err := w.Write(cr.header); err != nil {
			return 0, err
		}
	}
	for {
		b, err := cr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return dropped, err
		}
		if !b.pcap && b.typ == blockDSB {
			// TLS secrets: no lab identifiers, and kept or left out by
			// choice (Options.KeepTLSSecrets), not for want of anonymising.
			if an.keepSecrets {
				if _, err := w.Write(b.raw); err != nil {
					return dropped, err
				}
			}
			continue
		}
		raw, err := an.block(cr, b)
		if err != nil {
			return dropped, err
		}
		if raw == nil {
			dropped++
			continue
		}
		if _, err := w.Write(raw); err != nil {
			return dropped, err
		}
	}
	return dropped, w.Flush()
}

func (an *anonymizer) block(cr *capReader, b *block) ([]byte, error) {
	if b.pcap {
		p, _ := cr.packetOf(b)
		raw := append([]byte(nil), b.raw...)
		return raw, an.frame(p.linkType, raw[p.dataOff:p.dataOff+p.capLen])
	}
	switch b.typ {
	case blockSHB:
		return an.rebuild(b, 24, func(o *option) {
			if o.code >= 2 && o.code <= 4 { // shb_hardware, shb_os, shb_userappl
				o.val = []byte(an.text(string(o.val)))
			}
		}), nil
	case blockIDB:
		return an.rebuild(b, 16, func(o *option) {
			switch o.code {
			case 2, 3, 12: // if_name, if_description, if_os
				o.val = []byte(an.text(string(o.val)))
			case 4: // if_IPv4addr: address + netmask
				if len(o.val) == 8 {
					an.ip4At(o.val[:4])
				}
			case 5:
				if len(o.val) == 17 {
					an.ip6At(o.val[:16])
				}
			case 6: // if_MACaddr
				if len(o.val) == 6 {
					an.macAt(o.val)
				}
			}
		}), nil
	case blockEPB, blockPB, blockSPB:
		p, err := cr.packetOf(b)
		if err != nil {
			return nil, err
		}
		raw := append([]byte(nil), b.raw...)
		if err := an.frame(p.linkType, raw[p.dataOff:p.dataOff+p.capLen]); err != nil {
			return nil, err
		}
		if b.typ == blockSPB {
			return raw, nil
		}
		fixed := 28 + (p.capLen+3)&^3
		return an.rebuild(&block{typ: b.typ, raw: raw, bo: b.bo}, fixed, nil), nil
	case blockISB: // statistics; its comment holds the capture's last marks
		return an.rebuild(b, 20, nil), nil
	case 0x0000000A: // decryption secrets
		return b.raw, nil
	}
	return nil, nil
}

// rebuild re-serialises a block whose fixed part is raw[:fixed], applying the
// text replacement to comments and edit to the other options. The block is
// returned unchanged when nothing changed.
func (an *anonymizer) rebuild(b *block, fixed int, edit func(*option)) []byte {
	if fixed > len(b.raw)-4 {
		return b.raw
	}
	opts := parseOptions(b.raw[fixed:len(b.raw)-4], b.bo)
	changed := false
	for i := range opts {
		o := &opts[i]
		o.val = append([]byte(nil), o.val...)
		before := string(o.val)
		if o.code == 1 {
			o.val = []byte(an.text(before))
		} else if edit != nil {
			edit(o)
		}
		if string(o.val) != before {
			changed = true
		}
	}
	if !changed {
		return b.raw
	}
	out := append([]byte(nil), b.raw[:fixed]...)
	out = appendOptions(out, opts, b.bo)
	out = append(out, 0, 0, 0, 0)
	b.bo.PutUint32(out[4:8], uint32(len(out)))
	b.bo.PutUint32(out[len(out)-4:], uint32(len(out)))
	return out
}
