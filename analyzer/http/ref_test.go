package http

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// The parsers as they were before ParseRequestTo and ParseResponseTo: the
// reference the fuzz targets below hold the new ones to.

func refNormalizeHost(h string) string {
	h = strings.ToLower(h)
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		return h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

func refHeaders(l *lines) fields {
	f := fields{contentLength: -1}
	clSeen := false
	for {
		line, ok := l.next()
		if !ok || len(line) == 0 {
			return f
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue // obsolete folding or garbage: skip, as browsers do
		}
		name := line[:colon]
		value := string(bytes.TrimSpace(line[colon+1:]))
		switch {
		case asciiEqualFold(name, "host"):
			if f.host == "" {
				f.host = refNormalizeHost(value)
			}
		case asciiEqualFold(name, "user-agent"):
			if f.userAgent == "" {
				f.userAgent = value
			}
		case asciiEqualFold(name, "content-type"):
			if f.contentType == "" {
				f.contentType = value
			}
		case asciiEqualFold(name, "content-length"):
			n, err := strconv.ParseInt(value, 10, 64)
			switch {
			case err != nil || n < 0 || (clSeen && n != f.contentLength):
				f.contentLength = -1
			case !clSeen:
				f.contentLength = n
			}
			clSeen = true
		case asciiEqualFold(name, "transfer-encoding"):
			// chunked must be the last coding (RFC 9112 section 6.1).
			codings := strings.Split(value, ",")
			last := strings.TrimSpace(codings[len(codings)-1])
			if strings.EqualFold(last, "chunked") {
				f.chunked = true
			}
		}
	}
}

func refParseRequest(b []byte) (*Request, int, error) {
	n, err := headEnd(b)
	if err != nil {
		return nil, 0, err
	}
	l := lines{b: b[:n]}
	first, _ := l.next()
	// request-line = method [SP request-target] [SP HTTP-version]: like
	// Zeek and tshark, the target and the version may be missing; a last
	// word that is not HTTP/x.y leaves the version empty.
	line := string(first)
	method, rest, _ := strings.Cut(line, " ")
	if !isToken([]byte(method)) {
		return nil, 0, fmt.Errorf("request method %q: %w", clip([]byte(method)), ErrMalformed)
	}
	rest = strings.TrimSpace(rest)
	target, last, hasLast := rest, "", false
	if i := strings.LastIndex(rest, " "); i >= 0 {
		target, last, hasLast = strings.TrimSpace(rest[:i]), rest[i+1:], true
	} else if strings.HasPrefix(rest, "HTTP/") {
		target, last, hasLast = "", rest, true
	}
	version := ""
	if hasLast {
		version, _ = httpVersion([]byte(last))
	}
	f := refHeaders(&l)
	return &Request{
		Method:        method,
		URI:           target,
		Version:       version,
		Host:          f.host,
		UserAgent:     f.userAgent,
		ContentType:   f.contentType,
		ContentLength: f.contentLength,
		Chunked:       f.chunked,
	}, n, nil
}

func refParseResponse(b []byte) (*Response, int, error) {
	if len(b) >= 5 && !bytes.HasPrefix(b, []byte("HTTP/")) {
		return nil, 0, fmt.Errorf("status line %q: %w", clip(b[:5]), ErrMalformed)
	}
	n, err := headEnd(b)
	if err != nil {
		return nil, 0, err
	}
	l := lines{b: b[:n]}
	first, _ := l.next()
	// status-line = HTTP-version SP status-code SP [ reason-phrase ]
	sp := bytes.IndexByte(first, ' ')
	if sp < 0 {
		return nil, 0, fmt.Errorf("status line %q: %w", clip(first), ErrMalformed)
	}
	version, ok := httpVersion(first[:sp])
	if !ok {
		return nil, 0, fmt.Errorf("status line %q: %w", clip(first), ErrMalformed)
	}
	rest := first[sp+1:]
	if len(rest) < 3 || !isDigits(rest[:3]) || (len(rest) > 3 && rest[3] != ' ') {
		return nil, 0, fmt.Errorf("status code in %q: %w", clip(first), ErrMalformed)
	}
	status := int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
	reason := ""
	if len(rest) > 4 {
		reason = string(rest[4:])
	}
	f := refHeaders(&l)
	return &Response{
		Version:       version,
		Status:        status,
		Reason:        reason,
		ContentType:   f.contentType,
		ContentLength: f.contentLength,
		Chunked:       f.chunked,
	}, n, nil
}

// interner shares strings as a caller of ParseRequestTo would.
type interner map[string]string

func (m interner) str(b []byte) string {
	if s, ok := m[string(b)]; ok {
		return s
	}
	s := string(b)
	m[s] = s
	return s
}

func FuzzRequestTo(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	m := interner{}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wn, werr := refParseRequest(b)
		var got Request
		n, err := ParseRequestTo(b, &got, m.str)
		if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Fatalf("%q: error %v, want %v", b, err, werr)
		}
		if err == nil && (n != wn || got != *want) {
			t.Fatalf("%q: %+v %d, want %+v %d", b, got, n, *want, wn)
		}
	})
}

func FuzzResponseTo(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
	m := interner{}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wn, werr := refParseResponse(b)
		var got Response
		n, err := ParseResponseTo(b, &got, m.str)
		if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Fatalf("%q: error %v, want %v", b, err, werr)
		}
		if err == nil && (n != wn || got != *want) {
			t.Fatalf("%q: %+v %d, want %+v %d", b, got, n, *want, wn)
		}
	})
}

var requestSeeds = []string{
	"GET /a?b=c HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: x/1\r\n\r\n",
	"POST /p HTTP/1.0\r\nhOsT: h\r\nCONTENT-TYPE: text/plain\r\ncontent-length: 5\r\n\r\nhello",
	"GET / HTTP/1.1\r\nHost: [2001:DB8::1]:80\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: \r\nHost: Ex\xc3\x89.com.\r\n\r\n",
	"PUT /u HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\nContent-Length: +7\r\nContent-Length: 7\r\n\r\n",
	"PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked , \r\nContent-Length: 99999999999999999999\r\n\r\n",
	"GET / HTTP/1.1\nHost: a:b:c\nContent-Length: -0\n\n",
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\n\r\n",
	"HTTP/1.0 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 100\r\n\r\n",
	"HTTP/2.0 204 \r\ncontent-length: 0012\r\n\r\n",
}

var benchRequest = []byte("GET /pki/crl/products/MicRooCerAut2011_2011_03_22.crl HTTP/1.1\r\nCache-Control: max-age = 3000\r\nConnection: Keep-Alive\r\nAccept: */*\r\nIf-Modified-Since: Tue, 22 Mar 2011 18:00:00 GMT\r\nUser-Agent: Microsoft-CryptoAPI/10.0\r\nHost: crl.microsoft.com\r\n\r\n")

var benchResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: 1050\r\nLast-Modified: Tue, 22 Mar 2011 18:00:00 GMT\r\nETag: \"1\"\r\nServer: ECAcc (nyb/1D2E)\r\nDate: Sun, 06 Dec 2026 04:00:00 GMT\r\n\r\n")

func BenchmarkParseRequestTo(b *testing.B) {
	m := interner{}
	var req Request
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequestTo(benchRequest, &req, m.str); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResponseTo(b *testing.B) {
	m := interner{}
	var resp Response
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseResponseTo(benchResponse, &resp, m.str); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRefParseRequest(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := refParseRequest(benchRequest); err != nil {
			b.Fatal(err)
		}
	}
}
