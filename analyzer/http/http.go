// Package http parses HTTP/1.x request and response heads from a reassembled
// stream, and recognises OCSP requests.
package http

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrIncomplete means the head has not ended yet in the bytes given.
var ErrIncomplete = errors.New("http: incomplete head")

// ErrMalformed means the bytes are not an HTTP/1.x head.
var ErrMalformed = errors.New("http: malformed head")

// MaxHeadLen bounds the head size the parsers accept: a head that has not
// ended within this many bytes is malformed rather than incomplete, so a
// caller never buffers without limit.
const MaxHeadLen = 64 << 10

// Request is one request head.
type Request struct {
	Method        string
	URI           string
	Version       string // "1.1"
	Host          string // lower-cased, port removed
	UserAgent     string
	ContentType   string
	ContentLength int64 // -1 when absent
	Chunked       bool
}

// Response is one response head.
type Response struct {
	Version       string
	Status        int
	Reason        string
	ContentType   string
	ContentLength int64 // -1 when absent
	Chunked       bool
}

// headEnd returns the length of the head (through the blank line) at the
// start of b. Bare LF line endings are accepted, as real servers and clients
// (and Zeek) do.
func headEnd(b []byte) (int, error) {
	scan := b
	if len(scan) > MaxHeadLen {
		scan = scan[:MaxHeadLen]
	}
	for i := bytes.IndexByte(scan, '\n'); i >= 0 && i < len(scan); {
		switch {
		case i+1 < len(scan) && scan[i+1] == '\n':
			return i + 2, nil
		case i+2 < len(scan) && scan[i+1] == '\r' && scan[i+2] == '\n':
			return i + 3, nil
		}
		j := bytes.IndexByte(scan[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if len(b) >= MaxHeadLen {
		return 0, fmt.Errorf("no end of head within %d bytes: %w", MaxHeadLen, ErrMalformed)
	}
	return 0, ErrIncomplete
}

// lines iterates over the lines of a head, without their line ending.
type lines struct{ b []byte }

func (l *lines) next() ([]byte, bool) {
	if len(l.b) == 0 {
		return nil, false
	}
	i := bytes.IndexByte(l.b, '\n')
	var line []byte
	if i < 0 {
		line, l.b = l.b, nil
	} else {
		line, l.b = l.b[:i], l.b[i+1:]
	}
	return bytes.TrimSuffix(line, []byte{'\r'}), true
}

// fields holds the headers both heads share.
type fields struct {
	host, userAgent, contentType string
	contentLength                int64
	chunked                      bool
}

// headers reads header lines until the blank line. Names are compared
// case-insensitively; the first Host/User-Agent/Content-Type wins, a bad or
// conflicting Content-Length is -1 (unknown). Only the values kept become
// strings, through str.
func headers(l *lines, str func([]byte) string) fields {
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
		value := bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "host"):
			if f.host == "" {
				f.host = normalizeHost(value, str)
			}
		case asciiEqualFold(name, "user-agent"):
			if f.userAgent == "" {
				f.userAgent = str(value)
			}
		case asciiEqualFold(name, "content-type"):
			if f.contentType == "" {
				f.contentType = str(value)
			}
		case asciiEqualFold(name, "content-length"):
			n, err := parseInt(value)
			switch {
			case err != nil || n < 0 || (clSeen && n != f.contentLength):
				f.contentLength = -1
			case !clSeen:
				f.contentLength = n
			}
			clSeen = true
		case asciiEqualFold(name, "transfer-encoding"):
			// chunked must be the last coding (RFC 9112 section 6.1).
			last := bytes.TrimSpace(value[bytes.LastIndexByte(value, ',')+1:])
			if bytes.EqualFold(last, chunked) {
				f.chunked = true
			}
		}
	}
}

var chunked = []byte("chunked")

// parseInt is strconv.ParseInt(string(b), 10, 64) without the string for the
// usual plain digits.
func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 18 || !isDigits(b) {
		return strconv.ParseInt(string(b), 10, 64)
	}
	var n int64
	for _, c := range b {
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// normalizeHost lower-cases the host and removes a port and IPv6 brackets;
// str makes the string of the result. A host of lower-case ASCII, the usual
// one, is not copied on the way.
func normalizeHost(h []byte, str func([]byte) string) string {
	for _, c := range h {
		if c >= 'A' && c <= 'Z' || c >= 0x80 {
			h = bytes.ToLower(h) // Unicode rules, as strings.ToLower
			break
		}
	}
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return str(h[1:i])
		}
		return str(h)
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 && bytes.IndexByte(h[:i], ':') < 0 {
		return str(h[:i])
	}
	return str(bytes.TrimSuffix(h, []byte(".")))
}

func newString(b []byte) string { return string(b) }

// ParseRequest parses a request head at the start of b and returns it with the
// number of head bytes consumed (through the blank line).
func ParseRequest(b []byte) (*Request, int, error) {
	req := new(Request)
	n, err := ParseRequestTo(b, req, newString)
	if err != nil {
		return nil, 0, err
	}
	return req, n, nil
}

// ParseRequestTo is ParseRequest into *req, for a caller parsing many heads:
// str makes the strings that repeat from request to request (method, host,
// user agent, content type), so the caller may share them; it must return
// string(b) or an equal string. The URI is always a new string.
func ParseRequestTo(b []byte, req *Request, str func([]byte) string) (int, error) {
	n, err := headEnd(b)
	if err != nil {
		return 0, err
	}
	l := lines{b: b[:n]}
	first, _ := l.next()
	// request-line = method SP request-target SP HTTP-version; as Zeek and
	// tshark do, a line without the target or the version (HTTP/0.9 style,
	// or broken clients) still makes a request.
	method, rest, _ := bytes.Cut(first, []byte(" "))
	if !isToken(method) {
		return 0, fmt.Errorf("request method %q: %w", clip(method), ErrMalformed)
	}
	rest = bytes.TrimSpace(rest)
	target, last := rest, []byte(nil)
	if sp := bytes.LastIndexByte(rest, ' '); sp >= 0 {
		target, last = bytes.TrimSpace(rest[:sp]), rest[sp+1:]
	} else if bytes.HasPrefix(rest, httpSlash) {
		target, last = nil, rest
	}
	version := "" // none, or one that is not HTTP/x.y ("HTTP/1."): Zeek logs such requests too
	if last != nil {
		version, _ = httpVersion(last)
	}
	f := headers(&l, str)
	*req = Request{
		Method:        str(method),
		URI:           string(target),
		Version:       version,
		Host:          f.host,
		UserAgent:     f.userAgent,
		ContentType:   f.contentType,
		ContentLength: f.contentLength,
		Chunked:       f.chunked,
	}
	return n, nil
}

// ParseResponse parses a response head at the start of b.
func ParseResponse(b []byte) (*Response, int, error) {
	resp := new(Response)
	n, err := ParseResponseTo(b, resp, newString)
	if err != nil {
		return nil, 0, err
	}
	return resp, n, nil
}

// ParseResponseTo is ParseResponse into *resp; str makes the reason phrase
// and content type, as for ParseRequestTo.
func ParseResponseTo(b []byte, resp *Response, str func([]byte) string) (int, error) {
	if len(b) >= 5 && !bytes.HasPrefix(b, httpSlash) {
		return 0, fmt.Errorf("status line %q: %w", clip(b[:5]), ErrMalformed)
	}
	n, err := headEnd(b)
	if err != nil {
		return 0, err
	}
	l := lines{b: b[:n]}
	first, _ := l.next()
	// status-line = HTTP-version SP status-code SP [ reason-phrase ]
	sp := bytes.IndexByte(first, ' ')
	if sp < 0 {
		return 0, fmt.Errorf("status line %q: %w", clip(first), ErrMalformed)
	}
	version, ok := httpVersion(first[:sp])
	if !ok {
		return 0, fmt.Errorf("status line %q: %w", clip(first), ErrMalformed)
	}
	rest := first[sp+1:]
	if len(rest) < 3 || !isDigits(rest[:3]) || (len(rest) > 3 && rest[3] != ' ') {
		return 0, fmt.Errorf("status code in %q: %w", clip(first), ErrMalformed)
	}
	status := int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
	reason := ""
	if len(rest) > 4 {
		reason = str(rest[4:])
	}
	f := headers(&l, str)
	*resp = Response{
		Version:       version,
		Status:        status,
		Reason:        reason,
		ContentType:   f.contentType,
		ContentLength: f.contentLength,
		Chunked:       f.chunked,
	}
	return n, nil
}

var httpSlash = []byte("HTTP/")

// httpVersion accepts "HTTP/d.d" and returns "d.d".
func httpVersion(b []byte) (string, bool) {
	if len(b) != 8 || !bytes.HasPrefix(b, httpSlash) || b[6] != '.' ||
		b[5] < '0' || b[5] > '9' || b[7] < '0' || b[7] > '9' {
		return "", false
	}
	switch string(b[5:]) { // common versions without allocating
	case "1.1":
		return "1.1", true
	case "1.0":
		return "1.0", true
	}
	return string(b[5:]), true
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isToken reports whether b is an RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func clip(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

// methods are the request methods LooksLikeRequest knows (RFC 9110, WebDAV,
// and the ones seen from OS update agents).
var methods = []string{
	"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE",
	"PATCH", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK",
	"UNLOCK", "SEARCH", "REPORT", "SUBSCRIBE", "NOTIFY", "M-SEARCH", "BPROPFIND",
}

// LooksLikeRequest reports whether b starts like an HTTP request line (a known
// method followed by a space), so a flow on any port can be recognised.
func LooksLikeRequest(b []byte) bool {
	for _, m := range methods {
		if len(b) > len(m) && (b[len(m)] == ' ' || b[len(m)] == '\r' || b[len(m)] == '\n') && string(b[:len(m)]) == m {
			return true
		}
	}
	return false
}

// LooksLikeAnyRequest reports whether b starts like a request line of any
// method (an upper-case token, a space, then a target or "HTTP/"): for a
// flow on an HTTP port, where tshark and Zeek read unknown methods too.
func LooksLikeAnyRequest(b []byte) bool {
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 || sp > 32 || sp+1 >= len(b) {
		return false
	}
	for _, c := range b[:sp] {
		if !('A' <= c && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return b[sp+1] == '/' || b[sp+1] == '*' || bytes.HasPrefix(b[sp+1:], httpSlash) || bytes.HasPrefix(b[sp+1:], []byte("http"))
}
