package tlsdecrypt

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"hash"

	"golang.org/x/crypto/hkdf"
)

// Record protection kinds.
const (
	kindGCM = iota
	kindChaCha
	kindCBC
)

// suite is what decryption needs to know of a cipher suite.
type suite struct {
	kind   int
	keyLen int
	// TLS 1.2: the PRF hash (SHA-256 unless the suite names SHA-384); TLS
	// 1.3 and QUIC: the HKDF hash.
	hash func() hash.Hash
	// CBC suites: the record MAC.
	mac    func() hash.Hash
	macLen int
}

var (
	aes128GCM   = &suite{kind: kindGCM, keyLen: 16, hash: sha256.New}
	aes256GCM   = &suite{kind: kindGCM, keyLen: 32, hash: sha512.New384}
	chacha      = &suite{kind: kindChaCha, keyLen: 32, hash: sha256.New}
	cbc128SHA   = &suite{kind: kindCBC, keyLen: 16, hash: sha256.New, mac: sha1.New, macLen: 20}
	cbc256SHA   = &suite{kind: kindCBC, keyLen: 32, hash: sha256.New, mac: sha1.New, macLen: 20}
	cbc128SHA2  = &suite{kind: kindCBC, keyLen: 16, hash: sha256.New, mac: sha256.New, macLen: 32}
	cbc256SHA2  = &suite{kind: kindCBC, keyLen: 32, hash: sha256.New, mac: sha256.New, macLen: 32}
	cbc256SHA38 = &suite{kind: kindCBC, keyLen: 32, hash: sha512.New384, mac: sha512.New384, macLen: 48}
)

// suiteFor returns the cipher suite's parameters, or nil for one this
// package cannot decrypt (3DES, RC4, CCM, NULL, export suites …).
func suiteFor(id uint16) *suite {
	switch id {
	case 0x1301: // TLS_AES_128_GCM_SHA256
		return aes128GCM
	case 0x1302: // TLS_AES_256_GCM_SHA384
		return aes256GCM
	case 0x1303: // TLS_CHACHA20_POLY1305_SHA256
		return chacha
	case 0x009c, 0x009e, 0xc02b, 0xc02f, 0x00a2, 0x00a4, 0xc0a0:
		return aes128GCM
	case 0x009d, 0x009f, 0xc02c, 0xc030, 0x00a3, 0x00a5:
		return aes256GCM
	case 0xcca8, 0xcca9, 0xccaa:
		return chacha
	case 0x002f, 0x0033, 0x0032, 0xc004, 0xc009, 0xc00e, 0xc013:
		return cbc128SHA
	case 0x0035, 0x0039, 0x0038, 0xc005, 0xc00a, 0xc00f, 0xc014:
		return cbc256SHA
	case 0x003c, 0x0067, 0x0040, 0xc023, 0xc027:
		return cbc128SHA2
	case 0x003d, 0x006b, 0x006a:
		return cbc256SHA2
	case 0xc024, 0xc028:
		return cbc256SHA38
	}
	return nil
}

// expandLabel is TLS 1.3's HKDF-Expand-Label (RFC 8446 section 7.1) with an
// empty context, the only form record keys and QUIC need.
func expandLabel(h func() hash.Hash, secret []byte, label string, length int) []byte {
	info := make([]byte, 0, 4+6+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	out := make([]byte, length)
	// Expand fails only past 255 hash lengths.
	_, _ = hkdf.Expand(h, secret, info).Read(out)
	return out
}

// pHash is P_hash of RFC 5246 section 5: HMAC chained over A(i).
func pHash(out []byte, h func() hash.Hash, secret, seed []byte) {
	m := hmac.New(h, secret)
	m.Write(seed)
	a := m.Sum(nil)
	for len(out) > 0 {
		m.Reset()
		m.Write(a)
		m.Write(seed)
		out = out[copy(out, m.Sum(nil)):]
		m.Reset()
		m.Write(a)
		a = m.Sum(a[:0])
	}
}

// prf is the TLS PRF: TLS 1.2's P_<hash>, or for TLS 1.0 and 1.1 the XOR
// of P_MD5 and P_SHA1 over the two halves of the secret (RFC 2246 5).
func prf(version uint16, h func() hash.Hash, secret []byte, label string, seed []byte, n int) []byte {
	ls := append([]byte(label), seed...)
	out := make([]byte, n)
	if version >= 0x0303 {
		pHash(out, h, secret, ls)
		return out
	}
	half := (len(secret) + 1) / 2
	pHash(out, md5.New, secret[:half], ls)
	x := make([]byte, n)
	pHash(x, sha1.New, secret[len(secret)-half:], ls)
	for i := range out {
		out[i] ^= x[i]
	}
	return out
}
