package http

import (
	"encoding/base64"
	"mime"
	"net/url"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// maxOCSPCandidates bounds how many path suffixes IsOCSP tries. Some clients
// do not escape the '/' of base64 (RFC 6960 appendix A.1 says they should),
// which splits the request over several segments, so the request may start at
// any '/' followed by 'M' (the base64 of a DER SEQUENCE's first byte, 0x30).
const maxOCSPCandidates = 16

// IsOCSP reports whether the request is an OCSP request: a POST with content type
// application/ocsp-request, or a GET whose last path segment is a base64 DER OCSPRequest.
// The segment is URL-decoded, then standard or URL-safe base64, padded or not;
// for clients that leave base64's '/' unescaped, the trailing segments joined
// are tried too (see maxOCSPCandidates). The DER must be exactly one
// OCSPRequest (IsOCSPRequestDER).
func IsOCSP(r *Request) bool {
	if r == nil {
		return false
	}
	switch r.Method {
	case "POST":
		mt, _, err := mime.ParseMediaType(r.ContentType)
		return err == nil && mt == "application/ocsp-request"
	case "GET":
		return isOCSPGetURI(r.URI)
	}
	return false
}

func isOCSPGetURI(uri string) bool {
	// Absolute-form targets (proxies) carry scheme and authority: drop them.
	if i := strings.Index(uri, "://"); i >= 0 {
		rest := uri[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return false
		}
		uri = rest[j:]
	}
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	tries := 0
	for end := len(uri); end > 0 && tries < maxOCSPCandidates; {
		i := strings.LastIndexByte(uri[:end], '/')
		if i < 0 {
			return false
		}
		end = i
		if i+1 < len(uri) && uri[i+1] == 'M' {
			tries++
			if isOCSPSegment(uri[i+1:]) {
				return true
			}
		}
	}
	return false
}

func isOCSPSegment(seg string) bool {
	if len(seg) < 16 || len(seg) > 8192 {
		return false
	}
	s, err := url.PathUnescape(seg)
	if err != nil {
		return false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		der, err := enc.DecodeString(s)
		if err == nil && IsOCSPRequestDER(der) {
			return true
		}
	}
	return false
}

// IsOCSPRequestDER reports whether der is exactly one DER OCSPRequest
// (RFC 6960 section 4.1.1) down to the first CertID: hash algorithm,
// issuer name hash, issuer key hash and serial number.
func IsOCSPRequestDER(der []byte) bool {
	in := cryptobyte.String(der)
	var req, tbs, list, request, certID, alg cryptobyte.String
	if !in.ReadASN1(&req, asn1.SEQUENCE) || !in.Empty() {
		return false
	}
	if !req.ReadASN1(&tbs, asn1.SEQUENCE) {
		return false
	}
	// optionalSignature [0] EXPLICIT may follow; nothing else.
	if !req.Empty() && !req.SkipASN1(asn1.Tag(0).Constructed().ContextSpecific()) || !req.Empty() {
		return false
	}
	// version [0] and requestorName [1] are optional.
	if !tbs.SkipOptionalASN1(asn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.SkipOptionalASN1(asn1.Tag(1).Constructed().ContextSpecific()) {
		return false
	}
	if !tbs.ReadASN1(&list, asn1.SEQUENCE) || !list.ReadASN1(&request, asn1.SEQUENCE) {
		return false
	}
	if !request.ReadASN1(&certID, asn1.SEQUENCE) || !certID.ReadASN1(&alg, asn1.SEQUENCE) {
		return false
	}
	var oid, nameHash, keyHash cryptobyte.String
	return alg.ReadASN1(&oid, asn1.OBJECT_IDENTIFIER) &&
		certID.ReadASN1(&nameHash, asn1.OCTET_STRING) &&
		certID.ReadASN1(&keyHash, asn1.OCTET_STRING) &&
		certID.SkipASN1(asn1.INTEGER) && certID.Empty()
}
