// Package http parses HTTP/1.x request and response heads from a reassembled
// stream, and recognises OCSP requests.
package http

import "errors"

// ErrNotImplemented marks a stub awaiting its implementation.
var ErrNotImplemented = errors.New("http: not implemented")

// ErrIncomplete means the head has not ended yet in the bytes given.
var ErrIncomplete = errors.New("http: incomplete head")

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

// ParseRequest parses a request head at the start of b and returns it with the
// number of head bytes consumed (through the blank line).
func ParseRequest(b []byte) (*Request, int, error) { return nil, 0, ErrNotImplemented }

// ParseResponse parses a response head at the start of b.
func ParseResponse(b []byte) (*Response, int, error) { return nil, 0, ErrNotImplemented }

// IsOCSP reports whether the request is an OCSP request: a POST with content type
// application/ocsp-request, or a GET whose last path segment is a base64 DER OCSPRequest.
func IsOCSP(r *Request) bool { return false }

// LooksLikeRequest reports whether b starts like an HTTP request line (a known
// method followed by a space), so a flow on any port can be recognised.
func LooksLikeRequest(b []byte) bool { return false }
