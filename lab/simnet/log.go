package simnet

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Event is one line of responders.jsonl. Field order is the struct order, so
// the output is deterministic; empty fields are left out.
type Event struct {
	TS time.Time `json:"ts"`
	// Service: dns, ntp, http, https (requests and handshake errors), tls
	// (ClientHellos on 443/tcp), quic, tcp and udp (catch-alls), simnet (the
	// responders themselves).
	Service string `json:"service"`
	Proto   string `json:"proto"`  // tcp or udp
	Client  string `json:"client"` // ip:port of the guest
	// Dst is the destination the guest addressed, before the redirect rules:
	// TCP from SO_ORIGINAL_DST, redirected UDP (DNS, NTP, QUIC) from the
	// conntrack entry, catch-all UDP from IP_ORIGDSTADDR (TPROXY). Traffic
	// that was not redirected shows the local address.
	Dst string `json:"dst"`

	Name      string   `json:"name,omitempty"`  // DNS question name
	QType     string   `json:"qtype,omitempty"` // DNS question type
	SNI       string   `json:"sni,omitempty"`
	ALPN      []string `json:"alpn,omitempty"`
	Method    string   `json:"method,omitempty"`
	Host      string   `json:"host,omitempty"`
	URI       string   `json:"uri,omitempty"`
	UserAgent string   `json:"user_agent,omitempty"`
	Status    int      `json:"status,omitempty"`
	Size      int      `json:"size,omitempty"` // bytes received (datagram or first read)
	Hex       string   `json:"hex,omitempty"`  // first bytes, hex
	Text      string   `json:"text,omitempty"` // first bytes, printable ASCII, others as '.'
	Detail    string   `json:"detail,omitempty"`
}

// eventLog serialises events as JSON lines; one mutex keeps lines whole.
type eventLog struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
	err error // first write error, reported by Close
}

func (l *eventLog) log(e Event) {
	e.TS = l.now().UTC()
	b, err := json.Marshal(e)
	if err != nil {
		// Every field is a plain string/int; this cannot fail in practice,
		// but an event must never be silently dropped.
		b = fmt.Appendf(nil, `{"ts":%q,"service":"simnet","detail":%q}`, e.TS.Format(time.RFC3339Nano), "marshal event: "+err.Error())
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return
	}
	if _, err := l.w.Write(b); err != nil && l.err == nil {
		l.err = fmt.Errorf("write responder log: %w", err)
	}
}

func (l *eventLog) writeErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// firstBytes renders a payload prefix for the log: hex of at most max bytes and
// a printable form in which non-printable bytes become '.'.
func firstBytes(b []byte, max int) (hexs, text string) {
	if len(b) > max {
		b = b[:max]
	}
	t := make([]byte, len(b))
	for i, c := range b {
		if c >= 0x20 && c < 0x7f {
			t[i] = c
		} else {
			t[i] = '.'
		}
	}
	return fmt.Sprintf("%x", b), string(t)
}
