// Package ssdp reads SSDP messages (UPnP Device Architecture 2.0, section
// 1: HTTP over UDP port 1900): the M-SEARCH by which a machine looks for
// devices and services, the NOTIFY by which one announces itself, and the
// unicast answers to searches.
//
// It reads untrusted capture bytes: it never panics and never reads past
// what it is given.
package ssdp

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// ErrNotSSDP means the bytes are not an SSDP message.
var ErrNotSSDP = errors.New("ssdp: not an SSDP message")

// Message is an SSDP request or response.
type Message struct {
	// Method is "M-SEARCH" or "NOTIFY" (or another method over HTTPU);
	// "" for a response, whose Status is then set.
	Method, URI, Version string
	Status               int
	// Headers the analysis uses (values trimmed; the first of repeats).
	Host, ST, NT, NTS, USN, Server, UserAgent, Location, Man string
	// Vendor headers that name the device or its owner: the friendly name
	// some devices add (X-FRIENDLY-NAME, …) and others, as "name: value".
	Extra []string
}

// Parse reads an SSDP message (a UDP payload). A message without the blank
// line that ends the headers (some senders stop after the last header) is
// read to its end.
func Parse(b []byte) (*Message, error) {
	line, rest := cutLine(b)
	m := &Message{}
	f := strings.Fields(string(line))
	switch {
	case len(f) == 3 && strings.HasPrefix(f[0], "HTTP/"):
		m.Version = strings.TrimPrefix(f[0], "HTTP/")
		if _, err := fmt.Sscanf(f[1], "%d", &m.Status); err != nil {
			return nil, fmt.Errorf("%w: status %q", ErrNotSSDP, f[1])
		}
	case len(f) >= 3 && strings.HasPrefix(f[2], "HTTP/") && isToken(f[0]):
		m.Method, m.URI, m.Version = f[0], f[1], strings.TrimPrefix(f[2], "HTTP/")
	case len(f) == 4 && strings.HasPrefix(f[0], "HTTP/"):
		m.Version = strings.TrimPrefix(f[0], "HTTP/")
		fmt.Sscanf(f[1], "%d", &m.Status)
	default:
		return nil, fmt.Errorf("%w: start line %q", ErrNotSSDP, trunc(line))
	}
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v := strings.TrimSpace(string(value))
		switch n := strings.ToUpper(strings.TrimSpace(string(name))); n {
		case "HOST":
			set(&m.Host, v)
		case "ST":
			set(&m.ST, v)
		case "NT":
			set(&m.NT, v)
		case "NTS":
			set(&m.NTS, v)
		case "USN":
			set(&m.USN, v)
		case "SERVER":
			set(&m.Server, v)
		case "USER-AGENT":
			set(&m.UserAgent, v)
		case "LOCATION", "AL":
			set(&m.Location, v)
		case "MAN":
			set(&m.Man, v)
		case "X-USER-AGENT", "X-FRIENDLY-NAME", "FRIENDLYNAME.DLNA.ORG", "X-AV-PHYSICAL-UNIT-INFO", "X-MODELNAME", "DEVICEID.SMARTTHINGS.COM":
			if v != "" && len(m.Extra) < 16 {
				m.Extra = append(m.Extra, n+": "+v)
			}
		}
	}
	return m, nil
}

func set(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// cutLine returns the line at the start of b (without "\r\n" or "\n") and what follows.
func cutLine(b []byte) (line, rest []byte) {
	line, rest, _ = bytes.Cut(b, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), rest
}

// isToken reports whether s is an HTTP method token (letters, digits, '-', '_').
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}

func trunc(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}
