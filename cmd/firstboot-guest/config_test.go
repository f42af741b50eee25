package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	def := DefaultConfig()
	tests := []struct {
		name     string
		cmdline  string
		check    func(c Config) bool
		wantWarn []string
	}{
		{name: "defaults", cmdline: "console=ttyS0 quiet loglevel=3 panic=-1",
			check: func(c Config) bool {
				return c.Checkin == 30*time.Second && c.Checkins == 3 && c.Hostname == "firstboot-testguest" &&
					c.Vendor == "firstboot-testguest/1" && len(c.Names) == 4 && !c.SkipFirstRun
			}},
		{name: "checkin", cmdline: "console=ttyS0 fbguest.checkin=10s fbguest.checkins=0",
			check: func(c Config) bool { return c.Checkin == 10*time.Second && c.Checkins == 0 }},
		{name: "checkin off", cmdline: "fbguest.checkin=0",
			check: func(c Config) bool { return c.Checkin == 0 }},
		{name: "names and ntp", cmdline: "fbguest.names=a.example,b.example fbguest.ntp=10.0.0.1,pool.ntp.org:123",
			check: func(c Config) bool {
				return slices.Equal(c.Names, []string{"a.example", "b.example"}) && slices.Equal(c.NTP, []string{"10.0.0.1", "pool.ntp.org:123"})
			}},
		{name: "empty lists turn phases off", cmdline: "fbguest.names= fbguest.ntp= fbguest.https= fbguest.quic=",
			check: func(c Config) bool {
				return len(c.Names) == 0 && len(c.NTP) == 0 && c.HTTPSHost == "" && c.QUICHost == ""
			}},
		{name: "quoted value", cmdline: `foo="a b" fbguest.vendor="vendor/2"`,
			check: func(c Config) bool { return c.Vendor == "vendor/2" }},
		{name: "firstrun off", cmdline: "fbguest.firstrun=0",
			check: func(c Config) bool { return c.SkipFirstRun }},
		{name: "urls", cmdline: "fbguest.http=http://x.test/ok fbguest.checkin_url=http://y.test/c?a=1 fbguest.https=z.test:8443",
			check: func(c Config) bool {
				return c.HTTPURL == "http://x.test/ok" && c.CheckinURL == "http://y.test/c?a=1" && c.HTTPSHost == "z.test:8443"
			}},
		{name: "bad values keep defaults and warn",
			cmdline: "fbguest.checkin=soon fbguest.checkins=-1 fbguest.timeout=0 fbguest.hostname=bad_name fbguest.http=ftp://x fbguest.names=ok.test,bad..name fbguest.bogus=1 fbguest.firstrun=maybe",
			check: func(c Config) bool {
				return c.Checkin == def.Checkin && c.Checkins == def.Checkins && c.Timeout == def.Timeout &&
					c.Hostname == def.Hostname && c.HTTPURL == def.HTTPURL && slices.Equal(c.Names, def.Names) && !c.SkipFirstRun
			},
			wantWarn: []string{"fbguest.checkin=", "fbguest.checkins=", "fbguest.timeout=", "fbguest.hostname=", "fbguest.http:", "fbguest.names:", "unknown parameter fbguest.bogus", "fbguest.firstrun="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, warns := ParseCmdline(tt.cmdline)
			if !tt.check(c) {
				t.Errorf("config %+v", c)
			}
			if len(warns) != len(tt.wantWarn) {
				t.Fatalf("warnings %q, want %d", warns, len(tt.wantWarn))
			}
			for i, w := range tt.wantWarn {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %d %q, want it to mention %q", i, warns[i], w)
				}
			}
		})
	}
}

func TestSplitCmdline(t *testing.T) {
	got := splitCmdline(" a=1  b=\"x y\" \"c=d e\"\tf\n")
	want := []string{"a=1", "b=x y", "c=d e", "f"}
	if !slices.Equal(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
}

func TestNTPTimeRoundTrip(t *testing.T) {
	// 2026-11-23 12:00:00.5 UTC is 3,972,988,800.5 s after 1900 (RFC 5905's epoch).
	tm := time.Date(2026, 11, 23, 12, 0, 0, 500_000_000, time.UTC)
	v := ntpTime(tm)
	if secs := v >> 32; secs != uint64(tm.Unix())+2208988800 {
		t.Errorf("seconds %d", secs)
	}
	if frac := v & 0xffffffff; frac != 1<<31 {
		t.Errorf("fraction %#x, want 0x80000000 for half a second", frac)
	}
	if back := fromNTPTime(v); !back.Equal(tm) {
		t.Errorf("round trip %v, want %v", back, tm)
	}
}
