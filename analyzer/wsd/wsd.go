// Package wsd reads WS-Discovery messages (SOAP over UDP port 3702, as
// Windows and wsdd send them): the Probe by which a machine looks for
// devices of some types, the Hello and Bye by which one announces its
// arrival and departure, and the matches answering probes and resolves.
//
// It reads untrusted capture bytes with encoding/xml (which expands no
// external entities) and keeps what it returns bounded.
package wsd

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrNotWSD means the bytes are not a WS-Discovery SOAP message.
var ErrNotWSD = errors.New("wsd: not a WS-Discovery message")

// Message is a WS-Discovery message.
type Message struct {
	// Action is the last part of the WS-Addressing Action:
	// "Probe", "ProbeMatches", "Hello", "Bye", "Resolve", "ResolveMatches".
	Action    string
	MessageID string
	// Endpoints are the endpoint references (usually "urn:uuid:…") of
	// Hello, Bye, Resolve and the matches.
	Endpoints []string
	// Types are the QNames of Types elements ("wsdp:Device", "pub:Computer").
	Types []string
	// Scopes and XAddrs are the space-separated lists of those elements.
	Scopes, XAddrs []string
}

// maxItems bounds each list of a message.
const maxItems = 32

// Parse reads a WS-Discovery message (a UDP payload).
func Parse(b []byte) (*Message, error) {
	if !bytes.Contains(b, []byte("Envelope")) {
		return nil, ErrNotWSD
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = false
	m := &Message{}
	var path []string // local names of the open elements
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			if m.Action == "" {
				return nil, fmt.Errorf("%w: %v", ErrNotWSD, err)
			}
			return m, nil // a cut message: what was read counts
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(path) > 64 {
				return m, nil
			}
			path = append(path, t.Name.Local)
		case xml.EndElement:
			if len(path) > 0 {
				path = path[:len(path)-1]
			}
		case xml.CharData:
			if len(path) == 0 {
				continue
			}
			v := strings.TrimSpace(string(t))
			if v == "" {
				continue
			}
			switch path[len(path)-1] {
			case "Action":
				if in(path, "Header") {
					m.Action = v[strings.LastIndexAny(v, "/:")+1:]
				}
			case "MessageID":
				m.MessageID = v
			case "Address":
				if in(path, "EndpointReference") {
					m.Endpoints = add(m.Endpoints, v)
				}
			case "Types":
				for _, f := range strings.Fields(v) {
					m.Types = add(m.Types, f)
				}
			case "Scopes":
				for _, f := range strings.Fields(v) {
					m.Scopes = add(m.Scopes, f)
				}
			case "XAddrs":
				for _, f := range strings.Fields(v) {
					m.XAddrs = add(m.XAddrs, f)
				}
			}
		}
	}
	if m.Action == "" {
		return nil, fmt.Errorf("%w: no Action header", ErrNotWSD)
	}
	return m, nil
}

func in(path []string, name string) bool {
	for _, p := range path {
		if p == name {
			return true
		}
	}
	return false
}

func add(l []string, v string) []string {
	if len(l) >= maxItems {
		return l
	}
	for _, o := range l {
		if o == v {
			return l
		}
	}
	return append(l, v)
}
