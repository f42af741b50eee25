package http

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Request
		body int // bytes after the head
	}{
		{"basic", "GET /a?b=c HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: x/1\r\n\r\n",
			Request{Method: "GET", URI: "/a?b=c", Version: "1.1", Host: "example.com", UserAgent: "x/1", ContentLength: -1}, 0},
		{"header names any case, body not consumed", "POST /p HTTP/1.0\r\nhOsT: h\r\nCONTENT-TYPE: text/plain\r\ncontent-length: 5\r\n\r\nhello",
			Request{Method: "POST", URI: "/p", Version: "1.0", Host: "h", ContentType: "text/plain", ContentLength: 5}, 5},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n",
			Request{Method: "GET", URI: "/", Version: "1.1", Host: "a", ContentLength: -1}, 0},
		{"ipv6 host", "GET / HTTP/1.1\r\nHost: [2001:DB8::1]:80\r\n\r\n",
			Request{Method: "GET", URI: "/", Version: "1.1", Host: "2001:db8::1", ContentLength: -1}, 0},
		{"chunked last coding", "PUT /u HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
			Request{Method: "PUT", URI: "/u", Version: "1.1", ContentLength: -1, Chunked: true}, 0},
		{"chunked not last", "PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
			Request{Method: "PUT", URI: "/u", Version: "1.1", ContentLength: -1}, 0},
		{"conflicting content-length", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
			Request{Method: "POST", URI: "/", Version: "1.1", ContentLength: -1}, 0},
		{"bad content-length", "POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
			Request{Method: "POST", URI: "/", Version: "1.1", ContentLength: -1}, 0},
		{"first host wins, garbage line skipped", "GET / HTTP/1.1\r\nHost: a\r\nnot a header\r\nHost: b\r\n\r\n",
			Request{Method: "GET", URI: "/", Version: "1.1", Host: "a", ContentLength: -1}, 0},
		{"host with trailing dot", "GET / HTTP/1.1\r\nHost: a.example.\r\n\r\n",
			Request{Method: "GET", URI: "/", Version: "1.1", Host: "a.example", ContentLength: -1}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, n, err := ParseRequest([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			want := len(tc.in) - tc.body
			if *r != tc.want || n != want {
				t.Errorf("got %+v (n=%d)\nwant %+v (n=%d)", *r, n, tc.want, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	incomplete := []string{"", "GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTTP/1.1\r\n\r"}
	for _, in := range incomplete {
		if _, _, err := ParseRequest([]byte(in)); !errors.Is(err, ErrIncomplete) {
			t.Errorf("ParseRequest(%q) = %v, want ErrIncomplete", in, err)
		}
	}
	malformed := []string{"G(T / HTTP/1.1\r\n\r\n", " / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", MaxHeadLen/6+1)}
	for _, in := range malformed {
		if _, _, err := ParseRequest([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseRequest(%.30q) = %v, want ErrMalformed", in, err)
		}
	}
	for _, in := range []string{"HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTX/1.1 200 OK\r\n\r\n", "HTTP/1.1\r\n\r\n"} {
		if _, _, err := ParseResponse([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseResponse(%q) = %v, want ErrMalformed", in, err)
		}
	}
}

// TestParseLenientRequestLine: request lines without a target or a
// version still make requests, as Zeek and tshark read them (Zeek's
// methods.pcap has such clients).
func TestParseLenientRequestLine(t *testing.T) {
	for _, tc := range []struct{ in, uri, version string }{
		{"GET /\r\n\r\n", "/", ""},
		{"OPTIONS\r\nHost: www.example.com\r\n\r\n", "", ""},
		{"OPTIONS HTTP/1.1\r\nHost: www.example.com\r\n\r\n", "", "1.1"},
		{"GET /HTTP/1.1\r\nHost: www.example.com\r\n\r\n", "/HTTP/1.1", ""},
		{"GET / HTTP/1.\r\nHost: www.example.com\r\n\r\n", "/", ""},
		{"GET / HTTP/x.y\r\n\r\n", "/", ""},
	} {
		r, _, err := ParseRequest([]byte(tc.in))
		if err != nil || r.URI != tc.uri || r.Version != tc.version {
			t.Errorf("ParseRequest(%q) = %+v, %v; want uri %q version %q", tc.in, r, err, tc.uri, tc.version)
		}
	}
	if !LooksLikeRequest([]byte("OPTIONS\r\n")) || !LooksLikeAnyRequest([]byte("CCM_POST / HTTP/1.1")) || LooksLikeAnyRequest([]byte("SSH-2.0-OpenSSH")) {
		t.Error("LooksLikeRequest/LooksLikeAnyRequest")
	}
}

func TestParseResponse(t *testing.T) {
	in := "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	r, n, err := ParseResponse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Response{Version: "1.1", Status: 404, Reason: "Not Found", ContentType: "text/html", ContentLength: -1, Chunked: true}
	if *r != want || n != len(in)-5 {
		t.Errorf("got %+v n=%d", *r, n)
	}
	r, _, err = ParseResponse([]byte("HTTP/1.0 204\r\n\r\n"))
	if err != nil || r.Status != 204 || r.Reason != "" {
		t.Errorf("no reason: %+v %v", r, err)
	}
}

func TestLooksLikeRequest(t *testing.T) {
	for in, want := range map[string]bool{
		"GET / HTTP/1.1": true, "M-SEARCH * HTTP/1.1": true, "OPTIONS * HTTP/1.1": true,
		"GET": false, "GETX / HTTP/1.1": false, "get / HTTP/1.1": false, "\x16\x03\x01": false, "HTTP/1.1 200 OK": false,
	} {
		if got := LooksLikeRequest([]byte(in)); got != want {
			t.Errorf("LooksLikeRequest(%q) = %v", in, got)
		}
	}
}

// ocspRequestDER builds an OCSPRequest following RFC 6960 section 4.1.1:
// one Request for a CertID (SHA-1, issuer name and key hashes, serial).
func ocspRequestDER(t *testing.T, withVersion bool, hashByte byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(req *cryptobyte.Builder) { // OCSPRequest
		req.AddASN1(asn1.SEQUENCE, func(tbs *cryptobyte.Builder) { // TBSRequest
			if withVersion {
				tbs.AddASN1(asn1.Tag(0).Constructed().ContextSpecific(), func(v *cryptobyte.Builder) { v.AddASN1Int64(0) })
			}
			tbs.AddASN1(asn1.SEQUENCE, func(list *cryptobyte.Builder) { // requestList
				list.AddASN1(asn1.SEQUENCE, func(r *cryptobyte.Builder) { // Request
					r.AddASN1(asn1.SEQUENCE, func(id *cryptobyte.Builder) { // CertID
						id.AddASN1(asn1.SEQUENCE, func(alg *cryptobyte.Builder) {
							alg.AddASN1ObjectIdentifier([]int{1, 3, 14, 3, 2, 26})
							alg.AddASN1NULL()
						})
						id.AddASN1OctetString(bytes.Repeat([]byte{hashByte}, 20))
						id.AddASN1OctetString(bytes.Repeat([]byte{hashByte}, 20))
						id.AddASN1Int64(0x1234abcd)
					})
				})
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestIsOCSP(t *testing.T) {
	der := ocspRequestDER(t, false, 0)
	derV := ocspRequestDER(t, true, 0)
	b64 := base64.StdEncoding.EncodeToString(der)
	// A CertID with the serial missing is not an OCSPRequest.
	short := append([]byte(nil), der...)
	short = short[:len(short)-6]
	tests := []struct {
		name string
		r    Request
		want bool
	}{
		{"post", Request{Method: "POST", ContentType: "application/ocsp-request"}, true},
		{"post with params and case", Request{Method: "POST", ContentType: "Application/OCSP-Request; charset=binary"}, true},
		{"post other type", Request{Method: "POST", ContentType: "application/ocsp-response"}, false},
		{"get escaped", Request{Method: "GET", URI: "/ocsp/" + url.PathEscape(b64)}, true},
		{"get with version", Request{Method: "GET", URI: "/" + url.PathEscape(base64.StdEncoding.EncodeToString(derV))}, true},
		{"get raw url base64", Request{Method: "GET", URI: "/" + base64.RawURLEncoding.EncodeToString(der)}, true},
		{"get absolute form", Request{Method: "GET", URI: "http://ocsp.example/" + url.PathEscape(b64)}, true},
		{"get unescaped slash", Request{Method: "GET", URI: "/ocsp/" + b64WithSlash(t)}, true},
		{"get query ignored", Request{Method: "GET", URI: "/ocsp/" + url.PathEscape(b64) + "?x=1"}, true},
		{"get not ocsp", Request{Method: "GET", URI: "/" + base64.StdEncoding.EncodeToString([]byte("hello world, this is text"))}, false},
		{"get truncated der", Request{Method: "GET", URI: "/" + url.PathEscape(base64.StdEncoding.EncodeToString(short))}, false},
		{"get trailing garbage", Request{Method: "GET", URI: "/" + url.PathEscape(base64.StdEncoding.EncodeToString(append(der, 0)))}, false},
		{"head", Request{Method: "HEAD", URI: "/ocsp/" + url.PathEscape(b64)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsOCSP(&tc.r); got != tc.want {
				t.Errorf("IsOCSP(%+v) = %v", tc.r, got)
			}
		})
	}
	if IsOCSP(nil) {
		t.Error("IsOCSP(nil)")
	}
}

// b64WithSlash returns an OCSP request whose base64 form contains '/' (hash
// bytes 0xff encode as "/"), left unescaped as some clients do.
func b64WithSlash(t *testing.T) string {
	s := base64.StdEncoding.EncodeToString(ocspRequestDER(t, false, 0xff))
	if !strings.Contains(s, "/") {
		t.Fatalf("no slash in %s", s)
	}
	return s
}

func FuzzHTTPRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))
	f.Add([]byte("POST /ocsp HTTP/1.0\r\nContent-Type: application/ocsp-request\r\nContent-Length: 10\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseRequest(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) || r.ContentLength < -1 {
			t.Fatalf("n=%d len=%d %+v", n, len(b), r)
		}
		_ = IsOCSP(r)
		_ = LooksLikeRequest(b)
	})
}

func FuzzHTTPResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("HTTP/1.0 404 Not Found\nTransfer-Encoding: chunked\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseResponse(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) || r.Status < 0 || r.Status > 999 {
			t.Fatalf("n=%d len=%d %+v", n, len(b), r)
		}
	})
}
