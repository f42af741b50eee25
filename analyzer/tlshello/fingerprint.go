package tlshello

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
)

// JA3 returns the JA3 string and its MD5 in hex.
//
// JA3 (Salesforce): SSLVersion,Ciphers,Extensions,EllipticCurves,
// EllipticCurvePointFormats; decimal values joined by '-'; GREASE values
// (RFC 8701) left out of the cipher, extension and curve lists.
func JA3(ch *ClientHello) (full, hash string) {
	var stack [1024]byte
	b := AppendJA3(stack[:0], ch)
	var h [32]byte
	return string(b), string(AppendJA3Hash(h[:0], b))
}

// AppendJA3 appends the JA3 string of ch to b.
func AppendJA3(b []byte, ch *ClientHello) []byte {
	b = strconv.AppendUint(b, uint64(ch.LegacyVersion), 10)
	b = append(b, ',')
	b = appendDecimals(b, ch.CipherSuites)
	b = append(b, ',')
	b = appendDecimals(b, ch.Extensions)
	b = append(b, ',')
	b = appendDecimals(b, ch.SupportedGroups)
	b = append(b, ',')
	for i, f := range ch.ECPointFormats {
		if i > 0 {
			b = append(b, '-')
		}
		b = strconv.AppendUint(b, uint64(f), 10)
	}
	return b
}

// AppendJA3Hash appends the JA3 hash of the JA3 string ja3 to b.
func AppendJA3Hash(b, ja3 []byte) []byte {
	sum := md5.Sum(ja3)
	return hex.AppendEncode(b, sum[:])
}

func appendDecimals(b []byte, vs []uint16) []byte {
	first := true
	for _, v := range vs {
		if IsGREASE(v) {
			continue
		}
		if !first {
			b = append(b, '-')
		}
		first = false
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return b
}

// JA4 returns the JA4 fingerprint; transport is 't' for TCP, 'q' for QUIC, 'd' for DTLS.
//
// It follows FoxIO's JA4 specification (technical_details/JA4.md in
// github.com/FoxIO-LLC/ja4): GREASE is ignored everywhere, including in the
// signature algorithms.
func JA4(ch *ClientHello, transport byte) string {
	var out [36]byte
	return string(AppendJA4(out[:0], ch, transport))
}

// AppendJA4 appends the JA4 fingerprint of ch to b.
func AppendJA4(b []byte, ch *ClientHello, transport byte) []byte {
	b = ja4a(b, ch, transport)
	b = append(b, '_')
	var list [1024]byte
	var tmp [128]uint16

	ciphers := sortedNonGREASE(tmp[:0], ch.CipherSuites, false)
	b = appendTruncHash(b, appendHexList(list[:0], ciphers), len(ciphers) == 0)
	b = append(b, '_')

	exts := sortedNonGREASE(tmp[:0], ch.Extensions, true)
	l := appendHexList(list[:0], exts)
	l = appendSigAlgs(l, ch.SignatureAlgs)
	return appendTruncHash(b, l, len(exts) == 0)
}

// JA4Raw returns JA4_r, the fingerprint with the sorted lists in clear
// instead of hashed (same rules as JA4).
func JA4Raw(ch *ClientHello, transport byte) string {
	var tmp [128]uint16
	b := ja4a(make([]byte, 0, 64+5*(len(ch.CipherSuites)+len(ch.Extensions)+len(ch.SignatureAlgs))), ch, transport)
	b = append(b, '_')
	b = appendHexList(b, sortedNonGREASE(tmp[:0], ch.CipherSuites, false))
	b = append(b, '_')
	b = appendHexList(b, sortedNonGREASE(tmp[:0], ch.Extensions, true))
	b = appendSigAlgs(b, ch.SignatureAlgs)
	return string(b)
}

// ja4a appends the readable first part, e.g. "t13d1516h2".
func ja4a(b []byte, ch *ClientHello, transport byte) []byte {
	b = append(b, transport)
	b = append(b, ja4Version(ch)...)
	if slices.Contains(ch.Extensions, extServerName) {
		b = append(b, 'd')
	} else {
		b = append(b, 'i')
	}
	b = appendCount(b, ch.CipherSuites)
	b = appendCount(b, ch.Extensions)
	var first string
	if len(ch.ALPN) > 0 {
		first = ch.ALPN[0]
	}
	return appendALPN(b, first)
}

// ja4Version: highest non-GREASE supported_versions value, else the
// ClientHello's legacy version; the record-layer version is never used.
func ja4Version(ch *ClientHello) string {
	v, found := uint16(0), false
	for _, sv := range ch.SupportedVersions {
		if IsGREASE(sv) {
			continue
		}
		if !found || versionRank(sv) > versionRank(v) {
			v, found = sv, true
		}
	}
	if !found {
		v = ch.LegacyVersion
	}
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

// versionRank orders versions by age; DTLS numbers count down (0xfeff is
// DTLS 1.0, 0xfefc DTLS 1.3), so "highest" means newest.
func versionRank(v uint16) int {
	if v>>8 == 0xfe {
		return 0x10000 + int(0xff-v&0xff)
	}
	return int(v)
}

func appendCount(b []byte, vs []uint16) []byte {
	n := 0
	for _, v := range vs {
		if !IsGREASE(v) {
			n++
		}
	}
	n = min(n, 99)
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// appendALPN appends the first and last characters of the first ALPN value:
// "00" when there is none or it is empty; when either end is not
// alphanumeric, the first and last characters of the value's hex form.
func appendALPN(b []byte, p string) []byte {
	if p == "" {
		return append(b, '0', '0')
	}
	f, l := p[0], p[len(p)-1]
	if isAlnum(f) && isAlnum(l) {
		return append(b, f, l)
	}
	const digits = "0123456789abcdef"
	return append(b, digits[f>>4], digits[l&0x0f])
}

// sortedNonGREASE copies vs without GREASE values (and without SNI and ALPN
// when dropSNIALPN) into dst and sorts it.
func sortedNonGREASE(dst, vs []uint16, dropSNIALPN bool) []uint16 {
	for _, v := range vs {
		if IsGREASE(v) || dropSNIALPN && (v == extServerName || v == extALPN) {
			continue
		}
		dst = append(dst, v)
	}
	slices.Sort(dst)
	return dst
}

func appendHex4(b []byte, v uint16) []byte {
	const digits = "0123456789abcdef"
	return append(b, digits[v>>12], digits[v>>8&0xf], digits[v>>4&0xf], digits[v&0xf])
}

func appendHexList(b []byte, vs []uint16) []byte {
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendHex4(b, v)
	}
	return b
}

// appendSigAlgs appends "_" and the non-GREASE signature algorithms in wire
// order; nothing at all when there are none.
func appendSigAlgs(b []byte, algs []uint16) []byte {
	first := true
	for _, a := range algs {
		if IsGREASE(a) {
			continue
		}
		if first {
			b = append(b, '_')
		} else {
			b = append(b, ',')
		}
		first = false
		b = appendHex4(b, a)
	}
	return b
}

// appendTruncHash appends the first 12 hex characters of sha256(s), or
// "000000000000" when the list it stands for is empty.
func appendTruncHash(b, s []byte, empty bool) []byte {
	if empty {
		return append(b, "000000000000"...)
	}
	sum := sha256.Sum256(s)
	var h [12]byte
	hex.Encode(h[:], sum[:6])
	return append(b, h[:]...)
}
