package http

import "strconv"

// AddField takes one field of an HTTP/2 or HTTP/3 request header section
// (RFC 9113 8.3, RFC 9114 4.3): the pseudo-header fields and the headers
// Request keeps, by their lower-case names. The first value of a field wins.
func (r *Request) AddField(name, value string) {
	switch name {
	case ":method":
		set(&r.Method, value)
	case ":path":
		set(&r.URI, value)
	case ":authority", "host":
		if r.Host == "" {
			r.Host = normalizeHost([]byte(value), newString)
		}
	case "user-agent":
		set(&r.UserAgent, value)
	case "content-type":
		set(&r.ContentType, value)
	case "content-length":
		if n, err := strconv.ParseInt(value, 10, 64); err == nil && n >= 0 && r.ContentLength < 0 {
			r.ContentLength = n
		}
	}
}

// AddField takes one field of an HTTP/2 or HTTP/3 response header section.
func (r *Response) AddField(name, value string) {
	switch name {
	case ":status":
		if n, err := strconv.Atoi(value); err == nil && n >= 100 && n <= 999 && r.Status == 0 {
			r.Status = n
		}
	case "content-type":
		set(&r.ContentType, value)
	case "content-length":
		if n, err := strconv.ParseInt(value, 10, 64); err == nil && n >= 0 && r.ContentLength < 0 {
			r.ContentLength = n
		}
	}
}

func set(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}
