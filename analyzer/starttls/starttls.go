// Package starttls recognises the protocols that upgrade a plain-text TCP
// connection to TLS in the middle (SMTP, IMAP, POP3, FTP and XMPP) and the
// messages of the upgrade: the server's greeting, the client's request
// (STARTTLS, STLS, AUTH TLS, <starttls/>) and the server's answer, after
// which the connection's bytes are TLS records.
//
// The analyzer splits each direction into lines (XMPP into elements, see
// Next) and asks this package about each.
package starttls

import (
	"bytes"
	"strings"
)

// Protocols, named as Zeek names their services.
const (
	SMTP = "smtp"
	IMAP = "imap"
	POP3 = "pop3"
	FTP  = "ftp"
	XMPP = "xmpp"
)

// Greeting recognises a server's first line: "220 …" (SMTP or FTP, told
// apart by the greeting's words, then by the port), "* OK" or "* PREAUTH"
// (IMAP), "+OK" (POP3). It returns "" for anything else.
func Greeting(line []byte, serverPort uint16) string {
	switch {
	case len(line) >= 4 && string(line[:3]) == "220" && (line[3] == ' ' || line[3] == '-'):
		u := strings.ToUpper(string(line[:min(len(line), 256)]))
		switch {
		case strings.Contains(u, "FTP"):
			return FTP
		case strings.Contains(u, "SMTP") || strings.Contains(u, "MAIL"):
			return SMTP
		case serverPort == 21 || serverPort == 990:
			return FTP
		}
		return SMTP
	case hasPrefixFold(line, "* OK") || hasPrefixFold(line, "* PREAUTH"):
		return IMAP
	case hasPrefixFold(line, "+OK"):
		return POP3
	}
	return ""
}

// ClientFirst recognises a client that speaks first: an XMPP client's
// stream header.
func ClientFirst(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if bytes.HasPrefix(b, []byte("<?xml")) || bytes.HasPrefix(b, []byte("<stream:stream")) {
		if bytes.Contains(b, []byte("jabber")) || bytes.Contains(b, []byte("xmpp")) || len(b) < 256 {
			return XMPP
		}
	}
	return ""
}

// Next returns the length of the next line of b (through its "\n"), or for
// XMPP of the next element or text up to and including '>'; 0 when b holds
// no complete one.
func Next(proto string, b []byte) int {
	sep := byte('\n')
	if proto == XMPP {
		sep = '>'
	}
	return bytes.IndexByte(b, sep) + 1
}

// Request reports whether a client line asks to start TLS and, for a
// "220" greeting that could be SMTP or FTP, which one the command shows.
func Request(proto string, line []byte) (asks bool, actual string) {
	l := bytes.TrimRight(line, "\r\n")
	switch proto {
	case SMTP, FTP:
		switch {
		case equalFold(l, "STARTTLS"):
			return true, SMTP
		case equalFold(l, "AUTH TLS") || equalFold(l, "AUTH SSL") || equalFold(l, "AUTH TLS-C"):
			return true, FTP
		}
	case IMAP:
		// "tag STARTTLS"
		if i := bytes.IndexByte(l, ' '); i > 0 && equalFold(bytes.TrimSpace(l[i+1:]), "STARTTLS") {
			return true, IMAP
		}
	case POP3:
		if equalFold(l, "STLS") {
			return true, POP3
		}
	case XMPP:
		if hasPrefixFold(bytes.TrimLeft(l, " \t\r\n"), "<starttls") {
			return true, XMPP
		}
	}
	return false, proto
}

// Answer is what a server line says to a client's request.
type Answer uint8

// Answers.
const (
	More    Answer = iota // not the final answer yet (a continuation, an untagged line)
	Agreed                // TLS starts after this line
	Refused               // the connection goes on in plain text
)

// Reply classifies a server line after the client asked to start TLS.
func Reply(proto string, line []byte) Answer {
	l := bytes.TrimRight(line, "\r\n")
	switch proto {
	case SMTP, FTP:
		if len(l) < 3 || len(l) > 3 && l[3] == '-' {
			return More
		}
		code := string(l[:3])
		if proto == SMTP && code == "220" || proto == FTP && (code == "234" || code == "334") {
			return Agreed
		}
		return Refused
	case IMAP:
		if bytes.HasPrefix(l, []byte("* ")) || bytes.HasPrefix(l, []byte("+ ")) {
			return More
		}
		// "tag OK …"
		if i := bytes.IndexByte(l, ' '); i > 0 && hasPrefixFold(l[i+1:], "OK") {
			return Agreed
		}
		return Refused
	case POP3:
		if hasPrefixFold(l, "+OK") {
			return Agreed
		}
		return Refused
	case XMPP:
		t := bytes.TrimLeft(l, " \t\r\n")
		switch {
		case hasPrefixFold(t, "<proceed"):
			return Agreed
		case hasPrefixFold(t, "<failure"):
			return Refused
		}
	}
	return More
}

func hasPrefixFold(b []byte, p string) bool {
	return len(b) >= len(p) && strings.EqualFold(string(b[:len(p)]), p)
}

func equalFold(b []byte, s string) bool { return strings.EqualFold(string(b), s) }
