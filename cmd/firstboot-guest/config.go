package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is the agent's behaviour, set from fbguest.* kernel parameters.
type Config struct {
	Hostname     string        // fbguest.hostname: DHCP option 12
	Vendor       string        // fbguest.vendor: DHCP option 60
	Names        []string      // fbguest.names: looked up in the dns phase, comma-separated
	NTP          []string      // fbguest.ntp: NTP servers queried after the DHCP-provided one
	HTTPURL      string        // fbguest.http: plain-HTTP connectivity check
	HTTPSHost    string        // fbguest.https: TLS (SNI) target
	QUICHost     string        // fbguest.quic: QUIC Initial target
	CheckinURL   string        // fbguest.checkin_url: fetched at each check-in
	Checkin      time.Duration // fbguest.checkin: check-in interval; 0 disables
	Checkins     int           // fbguest.checkins: number of check-ins; 0 means forever
	Timeout      time.Duration // fbguest.timeout: bound on each network action
	SkipFirstRun bool          // fbguest.firstrun=0: skip the dns…quic phases (console only)
}

// DefaultConfig is what the agent does with no fbguest.* parameters.
func DefaultConfig() Config {
	return Config{
		Hostname:   "firstboot-testguest",
		Vendor:     "firstboot-testguest/1",
		Names:      []string{"connectivity.firstboot.test", "time.firstboot.test", "updates.firstboot.test", "telemetry.example.com"},
		NTP:        []string{"time.firstboot.test"},
		HTTPURL:    "http://connectivity.firstboot.test/generate_204",
		HTTPSHost:  "updates.firstboot.test",
		QUICHost:   "quic.firstboot.test",
		CheckinURL: "http://updates.firstboot.test/checkin",
		Checkin:    30 * time.Second,
		Checkins:   3,
		Timeout:    5 * time.Second,
	}
}

// ParseCmdline applies the fbguest.* parameters of a kernel command line to
// the defaults. Problems do not stop the boot: each one is returned as a
// warning and the default is kept.
func ParseCmdline(cmdline string) (Config, []string) {
	c := DefaultConfig()
	var warns []string
	warn := func(f string, a ...any) { warns = append(warns, fmt.Sprintf(f, a...)) }
	for _, f := range splitCmdline(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		key, ok := strings.CutPrefix(k, "fbguest.")
		if !ok {
			continue
		}
		switch key {
		case "hostname":
			if !validHostLabel(v) {
				warn("fbguest.hostname=%q: not a host name; keeping %q", v, c.Hostname)
				continue
			}
			c.Hostname = v
		case "vendor":
			if v == "" || len(v) > 255 || strings.ContainsAny(v, " \t") {
				warn("fbguest.vendor=%q: want 1-255 characters without spaces", v)
				continue
			}
			c.Vendor = v
		case "names":
			names, err := splitList(v, validHostname)
			if err != nil {
				warn("fbguest.names: %v", err)
				continue
			}
			c.Names = names
		case "ntp":
			servers, err := splitList(v, func(s string) bool { _, err := hostPort(s, "123"); return err == nil })
			if err != nil {
				warn("fbguest.ntp: %v", err)
				continue
			}
			c.NTP = servers
		case "http":
			if _, err := httpURL(v, "http"); err != nil {
				warn("fbguest.http: %v", err)
				continue
			}
			c.HTTPURL = v
		case "checkin_url":
			if _, err := httpURL(v, "http"); err != nil {
				warn("fbguest.checkin_url: %v", err)
				continue
			}
			c.CheckinURL = v
		case "https", "quic":
			if v != "" {
				if _, err := hostPort(v, "443"); err != nil {
					warn("fbguest.%s: %v", key, err)
					continue
				}
			}
			if key == "https" {
				c.HTTPSHost = v
			} else {
				c.QUICHost = v
			}
		case "checkin", "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || (key == "timeout" && d == 0) || d > 24*time.Hour {
				warn("fbguest.%s=%q: want a duration like 10s", key, v)
				continue
			}
			if key == "checkin" {
				c.Checkin = d
			} else {
				c.Timeout = d
			}
		case "checkins":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				warn("fbguest.checkins=%q: want a count >= 0", v)
				continue
			}
			c.Checkins = n
		case "firstrun":
			switch v {
			case "0", "no", "off":
				c.SkipFirstRun = true
			case "1", "yes", "on":
				c.SkipFirstRun = false
			default:
				warn("fbguest.firstrun=%q: want 0 or 1", v)
			}
		default:
			warn("unknown parameter fbguest.%s ignored", key)
		}
	}
	return c, warns
}

// splitCmdline splits a kernel command line into parameters; double quotes
// group spaces the way the kernel's parser does.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

func splitList(v string, valid func(string) bool) ([]string, error) {
	if v == "" {
		return []string{}, nil
	}
	parts := strings.Split(v, ",")
	for _, p := range parts {
		if !valid(p) {
			return nil, fmt.Errorf("%q is not valid", p)
		}
	}
	return parts, nil
}
