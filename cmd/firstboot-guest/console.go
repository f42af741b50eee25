package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Console protocol (documented in lab/guest/doc.go). One command per line:
//
//	fbguest ping ID
//	fbguest run ID ACTION [ARG] [ACTION [ARG]]...
//
// Lines not starting with "fbguest" are ignored (the serial line also
// carries the echo of what was typed and kernel messages).

// Action kinds and whether each takes an argument.
var actionArgs = map[string]bool{
	"dns": true, "http": true, "https": true, "quic": true, "pinned": true, "ntp": true, "tcp": true,
	"sleep": true, "poweroff": false, "reboot": false,
}

const maxActions = 16

// Action is one step of a console command.
type Action struct {
	Kind string
	Arg  string
}

// Command is a parsed console line.
type Command struct {
	Verb    string // "ping" or "run"
	ID      string
	Actions []Action
}

// String formats the command back into the line that parses to it.
func (c Command) String() string {
	parts := []string{"fbguest", c.Verb, c.ID}
	for _, a := range c.Actions {
		parts = append(parts, a.Kind)
		if actionArgs[a.Kind] {
			parts = append(parts, a.Arg)
		}
	}
	return strings.Join(parts, " ")
}

// errNotCommand means the line is not addressed to the agent.
var errNotCommand = errors.New("not an fbguest command")

// ParseCommand parses one console line. It returns errNotCommand for lines
// that do not start with "fbguest"; other errors describe a bad command and
// carry the ID when one could be read (for the error marker).
func ParseCommand(line string) (Command, error) {
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "fbguest" {
		return Command{}, errNotCommand
	}
	if len(f) < 3 {
		return Command{}, errors.New("want: fbguest ping ID | fbguest run ID ACTION [ARG]...")
	}
	c := Command{Verb: f[1], ID: f[2]}
	if !validID(c.ID) {
		return Command{}, fmt.Errorf("bad id %q: want 1-64 of A-Z a-z 0-9 . _ -", c.ID)
	}
	switch c.Verb {
	case "ping":
		if len(f) != 3 {
			return c, errors.New("ping takes only an id")
		}
		return c, nil
	case "run":
	default:
		return c, fmt.Errorf("unknown verb %q: want ping or run", c.Verb)
	}
	rest := f[3:]
	if len(rest) == 0 {
		return c, errors.New("run needs at least one action")
	}
	for len(rest) > 0 {
		kind := rest[0]
		needArg, ok := actionArgs[kind]
		if !ok {
			return c, fmt.Errorf("unknown action %q", kind)
		}
		a := Action{Kind: kind}
		rest = rest[1:]
		if needArg {
			if len(rest) == 0 {
				return c, fmt.Errorf("action %s needs an argument", kind)
			}
			a.Arg = rest[0]
			rest = rest[1:]
			if err := validateArg(kind, a.Arg); err != nil {
				return c, fmt.Errorf("action %s %q: %w", kind, a.Arg, err)
			}
		}
		if len(c.Actions) > 0 {
			if last := c.Actions[len(c.Actions)-1].Kind; last == "poweroff" || last == "reboot" {
				return c, fmt.Errorf("nothing may follow %s", last)
			}
		}
		c.Actions = append(c.Actions, a)
		if len(c.Actions) > maxActions {
			return c, fmt.Errorf("more than %d actions", maxActions)
		}
	}
	return c, nil
}

func validateArg(kind, arg string) error {
	switch kind {
	case "dns":
		if !validHostname(arg) {
			return errors.New("not a DNS name")
		}
	case "http":
		_, err := httpURL(arg, "http", "https")
		return err
	case "https", "quic", "pinned":
		_, err := hostPort(arg, "443")
		return err
	case "ntp":
		_, err := hostPort(arg, "123")
		return err
	case "tcp":
		if _, port, err := net.SplitHostPort(arg); err != nil || port == "" {
			return errors.New("want HOST:PORT")
		}
		_, err := hostPort(arg, "")
		return err
	case "sleep":
		n, err := strconv.ParseFloat(strings.TrimSuffix(arg, "s"), 64)
		if err != nil || n < 0 || n > 3600 || n != n {
			return errors.New("want seconds between 0 and 3600, like 2 or 0.5s")
		}
	}
	return nil
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// validHostLabel accepts one DNS label (a host name without dots).
func validHostLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// validHostname accepts a DNS name (labels of letters, digits, '-' and '_',
// which real-world names such as _dmarc use), with an optional final dot.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// hostPort validates HOST or HOST:PORT (HOST a name or IP, IPv6 in
// brackets) and returns it with the default port added.
func hostPort(s, defPort string) (string, error) {
	host, port := s, defPort
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.Count(s, ":") > 0 && net.ParseIP(s) == nil {
		return "", errors.New("want HOST or HOST:PORT")
	}
	if net.ParseIP(host) == nil && !validHostname(host) {
		return "", errors.New("bad host")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", errors.New("bad port")
	}
	return net.JoinHostPort(host, port), nil
}

// httpURL validates an absolute URL with one of the given schemes.
func httpURL(s string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	ok := false
	for _, sc := range schemes {
		ok = ok || u.Scheme == sc
	}
	if !ok || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("want an absolute %s URL", strings.Join(schemes, " or "))
	}
	if _, err := hostPort(u.Host, "80"); err != nil {
		return nil, fmt.Errorf("URL host: %w", err)
	}
	return u, nil
}
