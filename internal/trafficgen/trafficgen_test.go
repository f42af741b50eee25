package trafficgen

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testnet"
)

// TestGenerateMatchesTshark generates one pass of every client and checks with
// tshark, an independent reader, that the capture holds exactly what the
// clients were told to do.
func TestGenerateMatchesTshark(t *testing.T) {
	testnet.Require(t, "tcpdump", "tshark", "dnsmasq", "curl", "dig", "openssl", "chronyd", "busybox")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pcap := filepath.Join(t.TempDir(), "gen.pcap")
	res, err := Generate(ctx, Config{Out: pcap, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if res.Capture.Dropped != 0 {
		t.Errorf("tcpdump dropped %d packets", res.Capture.Dropped)
	}

	t.Run("dns names", func(t *testing.T) {
		got := testnet.FieldSet(t, pcap, "dns.qry.name", "dns.flags.response == 0")
		if !slices.Equal(got, res.DNSNames) {
			t.Errorf("tshark query names (%d) != generated (%d)\n only tshark: %v\n only generated: %v",
				len(got), len(res.DNSNames), minus(got, res.DNSNames), minus(res.DNSNames, got))
		}
		// Every query was answered by dnsmasq.
		q := testnet.FieldValues(t, pcap, "dns.id", "dns.flags.response == 0")
		r := testnet.FieldValues(t, pcap, "dns.id", "dns.flags.response == 1")
		if len(q) == 0 || len(q) != len(r) {
			t.Errorf("%d queries, %d responses", len(q), len(r))
		}
		for _, typ := range []string{"1", "28", "65"} { // A, AAAA, HTTPS (from dig)
			if len(testnet.FieldValues(t, pcap, "dns.qry.type", "dns.flags.response == 0 && dns.qry.type == "+typ)) == 0 {
				t.Errorf("no query of type %s", typ)
			}
		}
	})
	t.Run("tls server names", func(t *testing.T) {
		got := testnet.FieldSet(t, pcap, "tls.handshake.extensions_server_name", "tls.handshake.type == 1 && tcp")
		if !slices.Equal(got, res.TLSServerNames) {
			t.Errorf("tshark SNIs over TCP %v != generated %v", got, res.TLSServerNames)
		}
		ja3 := testnet.FieldSet(t, pcap, "tls.handshake.ja3", "")
		if len(ja3) < 3 { // curl, openssl s_client (1.2 and 1.3), Go
			t.Errorf("only %d distinct JA3 hashes %v, want curl's, openssl's and Go's", len(ja3), ja3)
		}
	})
	t.Run("quic server names", func(t *testing.T) {
		got := testnet.FieldSet(t, pcap, "tls.handshake.extensions_server_name", "quic")
		if !slices.Equal(got, res.QUICServerNames) {
			t.Errorf("tshark SNIs in QUIC %v != generated %v", got, res.QUICServerNames)
		}
	})
	t.Run("http hosts", func(t *testing.T) {
		got := testnet.FieldSet(t, pcap, "http.host", "http.request")
		if !slices.Equal(got, res.HTTPHosts) {
			t.Errorf("tshark HTTP hosts (%d) != generated (%d)\n only tshark: %v\n only generated: %v",
				len(got), len(res.HTTPHosts), minus(got, res.HTTPHosts), minus(res.HTTPHosts, got))
		}
	})
	t.Run("ntp", func(t *testing.T) {
		modes := testnet.FieldSet(t, pcap, "ntp.flags.mode", "ntp")
		if !slices.Equal(modes, []string{"3", "4"}) {
			t.Errorf("NTP modes %v, want client (3) and server (4)", modes)
		}
		if got := testnet.FieldSet(t, pcap, "ntp.stratum", "ntp.flags.mode == 4"); !slices.Equal(got, []string{"2"}) {
			t.Errorf("server stratum %v, want [2]", got)
		}
		if got := testnet.FieldSet(t, pcap, "ip.dst", "ntp.flags.mode == 3"); !slices.Equal(got, res.NTPServers) {
			t.Errorf("NTP requests went to %v, want %v", got, res.NTPServers)
		}
	})
	t.Run("dhcp", func(t *testing.T) {
		if got := testnet.FieldSet(t, pcap, "dhcp.option.hostname", ""); !slices.Equal(got, []string{res.DHCPHostname}) {
			t.Errorf("DHCP hostnames %v, want [%s]", got, res.DHCPHostname)
		}
		// DISCOVER, OFFER, REQUEST, ACK.
		if got := testnet.FieldSet(t, pcap, "dhcp.option.dhcp", ""); !slices.Equal(got, []string{"1", "2", "3", "5"}) {
			t.Errorf("DHCP message types %v, want [1 2 3 5]", got)
		}
	})
	t.Run("frames", func(t *testing.T) {
		lens := testnet.FieldValues(t, pcap, "frame.len", "")
		if int64(len(lens)) != res.Capture.Captured {
			t.Errorf("tshark reads %d frames, tcpdump captured %d", len(lens), res.Capture.Captured)
		}
		maxLen := 0
		for _, s := range lens {
			n, _ := strconv.Atoi(s)
			maxLen = max(maxLen, n)
		}
		if maxLen > testnet.MTU+14 {
			t.Errorf("frame of %d bytes: offload super-packets leaked into the capture", maxLen)
		}
		if v6 := testnet.FieldValues(t, pcap, "ipv6.src", "tcp.flags.syn == 1 && tcp.flags.ack == 0"); len(v6) == 0 {
			t.Errorf("no TCP connection over IPv6")
		}
	})
}

// minus returns the elements of a (sorted) not in b.
func minus(a, b []string) []string {
	var out []string
	for _, v := range a {
		if _, ok := slices.BinarySearch(b, v); !ok {
			out = append(out, v)
		}
	}
	return out
}

func TestGenerateReachesTarget(t *testing.T) {
	testnet.Require(t, "tcpdump", "dnsmasq", "curl", "dig", "openssl", "chronyd", "busybox")
	if testing.Short() {
		t.Skip("generates 8 MB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pcap := filepath.Join(t.TempDir(), "gen.pcap")
	const target = 8 << 20
	res, err := Generate(ctx, Config{Out: pcap, TargetBytes: target})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rounds < 2 {
		t.Errorf("%d rounds for %d bytes", res.Rounds, target)
	}
	// Real traffic mixes full-size segments with many small packets; the
	// project aims at 250-300k packets per 100 MB. The bounds are wide because
	// an 8 MB capture is dominated by the first-boot pass.
	perMB := float64(res.Capture.Captured) / (target / 1e6)
	if perMB < 1500 || perMB > 4500 {
		t.Errorf("%.0f packets per MB, want a realistic mix (1500-4500)", perMB)
	}
}
