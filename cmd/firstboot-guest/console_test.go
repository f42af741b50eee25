package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line    string
		want    Command
		wantErr string
	}{
		{line: "fbguest ping p1", want: Command{Verb: "ping", ID: "p1"}},
		{line: "  fbguest   run s1 dns example.com  ", want: Command{Verb: "run", ID: "s1", Actions: []Action{{"dns", "example.com"}}}},
		{line: "fbguest run step-2.a http http://a.test/x?y=1 https b.test quic c.test:4433 ntp 10.0.0.1 tcp d.test:22 sleep 0.5 poweroff",
			want: Command{Verb: "run", ID: "step-2.a", Actions: []Action{
				{"http", "http://a.test/x?y=1"}, {"https", "b.test"}, {"quic", "c.test:4433"}, {"ntp", "10.0.0.1"},
				{"tcp", "d.test:22"}, {"sleep", "0.5"}, {"poweroff", ""}}}},
		{line: "fbguest run r reboot", want: Command{Verb: "run", ID: "r", Actions: []Action{{"reboot", ""}}}},
		{line: "fbguest run v6 tcp [fd00::1]:80", want: Command{Verb: "run", ID: "v6", Actions: []Action{{"tcp", "[fd00::1]:80"}}}},
		{line: "fbguest", wantErr: "want: fbguest ping"},
		{line: "fbguest run", wantErr: "want: fbguest ping"},
		{line: "fbguest run bad/id dns x.test", wantErr: "bad id"},
		{line: "fbguest jump j1", wantErr: "unknown verb"},
		{line: "fbguest ping p1 extra", wantErr: "only an id"},
		{line: "fbguest run r1", wantErr: "at least one action"},
		{line: "fbguest run r1 dns", wantErr: "needs an argument"},
		{line: "fbguest run r1 dig x.test", wantErr: `unknown action "dig"`},
		{line: "fbguest run r1 dns bad..name", wantErr: "not a DNS name"},
		{line: "fbguest run r1 http ftp://x.test/", wantErr: "absolute http or https URL"},
		{line: "fbguest run r1 http /relative", wantErr: "absolute"},
		{line: "fbguest run r1 tcp x.test", wantErr: "HOST:PORT"},
		{line: "fbguest run r1 tcp x.test:99999", wantErr: "bad port"},
		{line: "fbguest run r1 https a.test:0", wantErr: "bad port"},
		{line: "fbguest run r1 sleep forever", wantErr: "seconds"},
		{line: "fbguest run r1 poweroff dns x.test", wantErr: "nothing may follow poweroff"},
		{line: "fbguest run r1 " + strings.Repeat("dns a.test ", 17), wantErr: "more than 16"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := ParseCommand(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseCommandIgnoresOtherLines(t *testing.T) {
	for _, l := range []string{"", "   ", "[    1.234] virtio_net virtio0 eth0: renamed", "FIRSTBOOT-GUEST done x ok", "fbguestrun x", "# fbguest ping x"} {
		if _, err := ParseCommand(l); !errors.Is(err, errNotCommand) {
			t.Errorf("%q: err %v, want errNotCommand", l, err)
		}
	}
}

// FuzzConsoleCommand: parsing never panics, and a parsed command formats
// back to a line that parses to the same command.
func FuzzConsoleCommand(f *testing.F) {
	for _, s := range []string{
		"fbguest ping p1",
		"fbguest run s1 dns example.com http http://a.test/ https b.test:443 quic c.test ntp 10.0.0.1 tcp [::1]:80 sleep 1 reboot",
		"fbguest run x tcp d.test:22",
		"fbguest run \x00 dns",
		"fbguest run a http http://[::1]:80/%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCommand(line)
		if err != nil {
			return
		}
		again, err := ParseCommand(c.String())
		if err != nil {
			t.Fatalf("%q parsed to %+v, whose String %q does not parse: %v", line, c, c.String(), err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip: %+v -> %q -> %+v", c, c.String(), again)
		}
		if !validID(c.ID) || (c.Verb == "run" && (len(c.Actions) == 0 || len(c.Actions) > maxActions)) {
			t.Fatalf("accepted an invalid command %+v", c)
		}
	})
}
