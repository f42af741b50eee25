// Package mdns tells what a multicast DNS or LLMNR message reveals about
// its sender, by the conventions of DNS-Based Service Discovery (RFC 6762,
// RFC 6763, RFC 4795): the host name it claims or announces, the services
// it offers (types, instance names, TXT keys such as a device's model), the
// HINFO it publishes, and the names it looks for. The message itself is
// decoded by package dns.
package mdns

import (
	"strings"

	"github.com/firstboot/firstboot/analyzer/dns"
)

// Item is one thing a message reveals: Kind is "hostname", "query",
// "service_type", "service_instance", "txt", "hinfo" or "address".
type Item struct {
	Kind, Value string
}

// Message kinds (Kind's results).
const (
	Query        = "query"
	Probe        = "probe"
	Response     = "response"
	Announcement = "announcement"
)

// Kind names a message: a "probe" (a query with proposed records in the
// authority section, claiming a name), a "query", an "announcement" (an
// unsolicited response: no question), or a "response".
func Kind(m *dns.Full) string {
	switch {
	case !m.Response && len(m.Authority) > 0:
		return Probe
	case !m.Response:
		return Query
	case len(m.Questions) == 0:
		return Announcement
	}
	return Response
}

// maxItems bounds what Items returns: a real message reveals a few dozen
// things; a crafted one must not make the repeat check quadratic.
const maxItems = 64

// servicesName is the DNS-SD service type enumeration name.
const servicesName = "_services._dns-sd._udp.local"

// Items lists what m reveals, in message order, without repeats.
func Items(m *dns.Full) []Item {
	var out []Item
	add := func(kind, v string) {
		if v == "" || v == "." || len(out) >= maxItems {
			return
		}
		if kind == "service_instance" {
			v = unescapeInstance(v)
		}
		for _, it := range out {
			if it.Kind == kind && it.Value == v {
				return
			}
		}
		out = append(out, Item{kind, v})
	}
	kind := Kind(m)
	for _, q := range m.Questions {
		switch {
		case kind == Probe:
			// A probe asks for the names it is about to claim (the
			// reverse names' records say which host they point to).
			if isReverse(q.Name) {
				continue
			}
			if isService(q.Name) {
				add("service_instance", q.Name)
			} else {
				add("hostname", q.Name)
			}
		case !m.Response && !isReverse(q.Name):
			add("query", q.Name)
		}
	}
	for _, sec := range [][]dns.RR{m.Answers, m.Authority, m.Additional} {
		for _, rr := range sec {
			record(add, &rr)
		}
	}
	return out
}

// record adds what one resource record reveals.
func record(add func(kind, v string), rr *dns.RR) {
	switch rr.Type {
	case dns.TypeA, dns.TypeAAAA:
		add("hostname", rr.Name)
		add("address", rr.Data)
	case dns.TypePTR:
		switch {
		case rr.Name == servicesName:
			add("service_type", rr.Data)
		case isReverse(rr.Name):
			add("hostname", rr.Data)
		case serviceType(rr.Name) != "":
			add("service_type", serviceType(rr.Name))
			add("service_instance", rr.Data)
		}
	case dns.TypeSRV:
		add("service_instance", rr.Name)
		if f := strings.Fields(rr.Data); len(f) == 4 {
			add("hostname", f[3])
		}
	case dns.TypeTXT:
		if isService(rr.Name) {
			add("service_instance", rr.Name)
		}
		for _, s := range dns.Strings(rr.Data) {
			if s != "" && len(s) <= 255 {
				add("txt", s)
			}
		}
	case dns.TypeHINFO:
		add("hostname", rr.Name)
		add("hinfo", strings.Join(dns.Strings(rr.Data), " "))
	}
}

// serviceType returns the service type a name is or ends with
// ("_ipp._tcp.local" of "My Printer._ipp._tcp.local", of
// "_universal._sub._ipp._tcp.local" too), or "".
func serviceType(name string) string {
	labels := strings.Split(name, ".")
	for i := 0; i+1 < len(labels); i++ {
		if strings.HasPrefix(labels[i], "_") && (labels[i+1] == "_tcp" || labels[i+1] == "_udp") {
			return strings.Join(labels[i:], ".")
		}
	}
	return ""
}

// isService reports whether name is a service instance name
// ("Instance._type._tcp.local").
func isService(name string) bool {
	t := serviceType(name)
	return t != "" && t != name
}

func isReverse(name string) bool {
	return strings.HasSuffix(name, ".in-addr.arpa") || strings.HasSuffix(name, ".ip6.arpa")
}

// unescapeInstance makes a service instance name readable: its first label
// is free text (RFC 6763 4.3), which the presentation form escapes
// ("My\032Printer"); spaces and other printable bytes come back, a dot
// stays escaped.
func unescapeInstance(name string) string {
	if !strings.Contains(name, "\\") {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '\\' || i+1 == len(name) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(name) && isDigit(name[i+1]) && isDigit(name[i+2]) && isDigit(name[i+3]) {
			v := int(name[i+1]-'0')*100 + int(name[i+2]-'0')*10 + int(name[i+3]-'0')
			if v >= 0x20 && v < 0x7f && v != '.' && v != '\\' {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
