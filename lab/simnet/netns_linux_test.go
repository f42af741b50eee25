package simnet

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/testnet"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread that has joined the named network namespace
// (sockets fn creates stay there).
func inNetns(name string, fn func() error) error {
	return (&testnet.Namespace{Name: name}).Do(fn)
}

// mustRun runs a command and fails the test on error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runTool(t, args[0], args[1:]...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestRedirectInNamespace builds a two-namespace lab: "r" holds the
// responders on lab0 (10.213.7.1), "g" is the guest on the other end of a
// veth pair with its default route via 10.213.7.1. Nothing routes out of
// either namespace. Traffic the guest sends to addresses that exist nowhere
// must land on the responders, and the log must name the original destination.
func TestRedirectInNamespace(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"ip", "iptables", "curl", "dig", "bash", "openssl"} {
		needTool(t, tool)
	}
	checkNoLeaks(t)
	ctx := context.Background()

	rnd := make([]byte, 4)
	rand.Read(rnd)
	rns, gns := "fbsn-r-"+hex.EncodeToString(rnd), "fbsn-g-"+hex.EncodeToString(rnd)
	for _, ns := range []string{rns, gns} {
		mustRun(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := runTool(t, "ip", "netns", "del", ns); err != nil {
				t.Errorf("delete namespace %s: %v\n%s", ns, err, out)
			}
		})
	}
	mustRun(t, "ip", "-n", rns, "link", "add", "lab0", "type", "veth", "peer", "name", "eth0", "netns", gns)
	mustRun(t, "ip", "-n", rns, "addr", "add", "10.213.7.1/24", "dev", "lab0")
	mustRun(t, "ip", "-n", gns, "addr", "add", "10.213.7.2/24", "dev", "eth0")
	for _, l := range [][2]string{{rns, "lo"}, {rns, "lab0"}, {gns, "lo"}, {gns, "eth0"}} {
		mustRun(t, "ip", "-n", l[0], "link", "set", l[1], "up")
	}
	mustRun(t, "ip", "-n", gns, "route", "add", "default", "via", "10.213.7.1")

	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(dir, CACertFile)
	logBuf := &lockedBuffer{}
	addr := netip.MustParseAddr("10.213.7.1")
	var r *Responders
	err = inNetns(rns, func() error {
		var err error
		r, err = Start(ctx, Config{Addr: addr, Ports: DefaultPorts(), CA: ca, Log: logBuf})
		return err
	})
	if err != nil {
		t.Fatalf("start responders in %s: %v", rns, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if !r.CatchAllUDPTransparent() {
		t.Fatal("catch-all UDP socket did not get IP_TRANSPARENT")
	}
	if err := InstallRedirect(ctx, rns, "lab0", addr, DefaultPorts()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveRedirect(ctx, rns, "lab0", addr, DefaultPorts()); err != nil {
			t.Errorf("RemoveRedirect: %v", err)
		}
		out, _ := runTool(t, "ip", "netns", "exec", rns, "iptables-save")
		if strings.Contains(out, ruleComment) {
			t.Errorf("rules left after RemoveRedirect:\n%s", out)
		}
		if out, _ := runTool(t, "ip", "-n", rns, "rule", "show"); strings.Contains(out, "lookup "+TProxyTable) {
			t.Errorf("policy rule left after RemoveRedirect:\n%s", out)
		}
	})
	guest := func(args ...string) (string, error) {
		return runTool(t, "ip", append([]string{"netns", "exec", gns}, args...)...)
	}

	t.Run("http to a made-up address", func(t *testing.T) {
		out, err := guest("curl", "-sS", "--max-time", "5", "http://203.0.113.7/some/path")
		if err != nil || out != DefaultBody {
			t.Fatalf("curl: %v %q", err, out)
		}
		logBuf.waitEvent(t, "http with original dst", func(e Event) bool {
			return e.Service == "http" && e.Dst == "203.0.113.7:80" && e.Host == "203.0.113.7" && strings.HasPrefix(e.Client, "10.213.7.2:")
		})
	})
	t.Run("dns to a made-up resolver", func(t *testing.T) {
		out, err := guest("dig", "@198.51.100.1", "+time=2", "+tries=1", "+short", "name.example")
		if err != nil || strings.TrimSpace(out) != "10.213.7.1" {
			t.Fatalf("dig: %v %q", err, out)
		}
		logBuf.waitEvent(t, "dns", func(e Event) bool {
			return e.Service == "dns" && e.Proto == "udp" && e.Name == "name.example." && e.Dst == "198.51.100.1:53" && strings.HasPrefix(e.Client, "10.213.7.2:")
		})
		out, err = guest("dig", "@198.51.100.1", "+tcp", "+time=2", "+tries=1", "+short", "tcp.example")
		if err != nil || strings.TrimSpace(out) != "10.213.7.1" {
			t.Fatalf("dig +tcp: %v %q", err, out)
		}
		logBuf.waitEvent(t, "dns over tcp with original dst", func(e Event) bool {
			return e.Service == "dns" && e.Proto == "tcp" && e.Name == "tcp.example." && e.Dst == "198.51.100.1:53"
		})
	})
	t.Run("https to a made-up address", func(t *testing.T) {
		out, err := guest("curl", "-sS", "--max-time", "5", "--cacert", caPath, "--resolve", "secure.example:443:203.0.113.9",
			"https://secure.example/connecttest.txt")
		if err != nil || out != "Microsoft Connect Test" {
			t.Fatalf("curl: %v %q", err, out)
		}
		logBuf.waitEvent(t, "ClientHello with original dst", func(e Event) bool {
			return e.Service == "tls" && e.SNI == "secure.example" && e.Dst == "203.0.113.9:443"
		})
		logBuf.waitEvent(t, "https request with original dst", func(e Event) bool {
			return e.Service == "https" && e.SNI == "secure.example" && e.Dst == "203.0.113.9:443"
		})
	})
	t.Run("tcp to an unknown port", func(t *testing.T) {
		out, err := guest("bash", "-c", "exec 3<>/dev/tcp/192.0.2.55/8443 && printf 'hello-8443\\r\\n' >&3 && cat <&3")
		if err != nil || out != "" {
			t.Fatalf("bash /dev/tcp: %v %q", err, out)
		}
		logBuf.waitEvent(t, "catch-all tcp with original dst", func(e Event) bool {
			return e.Service == "tcp" && e.Dst == "192.0.2.55:8443" && e.Text == "hello-8443.." && strings.HasPrefix(e.Client, "10.213.7.2:")
		})
	})
	t.Run("udp to an unknown port", func(t *testing.T) {
		if out, err := guest("bash", "-c", "printf hello-udp >/dev/udp/192.0.2.77/5000"); err != nil {
			t.Fatalf("bash /dev/udp: %v %s", err, out)
		}
		logBuf.waitEvent(t, "catch-all udp with original dst", func(e Event) bool {
			return e.Service == "udp" && e.Dst == "192.0.2.77:5000" && e.Text == "hello-udp" && strings.HasPrefix(e.Client, "10.213.7.2:")
		})
	})
	t.Run("ntp to a made-up server", func(t *testing.T) {
		if _, err := os.Stat("/usr/sbin/chronyd"); err != nil {
			testenv.Missing(t, "chronyd not installed")
		}
		out, err := guest("chronyd", "-Q", "-t", "20", "-d", "server 198.51.100.123 iburst maxsamples 1")
		if err != nil || !strings.Contains(out, "System clock wrong by") {
			t.Fatalf("chronyd: %v\n%s", err, out)
		}
		logBuf.waitEvent(t, "ntp", func(e Event) bool {
			return e.Service == "ntp" && e.Dst == "198.51.100.123:123" && strings.HasPrefix(e.Client, "10.213.7.2:")
		})
	})
	t.Run("quic to a made-up address", func(t *testing.T) {
		var pc net.PacketConn
		if err := inNetns(gns, func() error {
			var err error
			pc, err = net.ListenPacket("udp4", "10.213.7.2:0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		tr := &quic.Transport{Conn: pc}
		defer tr.Close()
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.CertPEM)
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := tr.Dial(qctx, &net.UDPAddr{IP: net.IPv4(203, 0, 113, 10), Port: 443},
			&tls.Config{RootCAs: pool, ServerName: "quic.example", NextProtos: []string{"h3"}}, nil)
		if err != nil {
			t.Fatalf("QUIC handshake through the redirect: %v", err)
		}
		c.CloseWithError(0, "")
		logBuf.waitEvent(t, "quic initial", func(e Event) bool {
			return e.Service == "quic" && e.Size >= 1200 && e.Dst == "203.0.113.10:443" && strings.HasPrefix(e.Client, "10.213.7.2:")
		})
		logBuf.waitEvent(t, "quic ClientHello", func(e Event) bool {
			return e.Service == "quic" && e.SNI == "quic.example" && e.Detail == "ClientHello" && e.Dst == "203.0.113.10:443"
		})
	})
	t.Run("broadcast is not diverted", func(t *testing.T) {
		// bash cannot set SO_BROADCAST; a socket made in the guest namespace can.
		var pc net.PacketConn
		if err := inNetns(gns, func() error {
			lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1) })
				return serr
			}}
			var err error
			pc, err = lc.ListenPacket(ctx, "udp4", "10.213.7.2:0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if _, err := pc.WriteTo([]byte("bcast"), &net.UDPAddr{IP: net.IPv4(10, 213, 7, 255), Port: 5001}); err != nil {
			t.Fatal(err)
		}
		// Unicast sent after the broadcast is seen; the broadcast must not be.
		if out, err := guest("bash", "-c", "printf after-bcast >/dev/udp/192.0.2.77/5002"); err != nil {
			t.Fatalf("bash /dev/udp: %v %s", err, out)
		}
		logBuf.waitEvent(t, "marker datagram", func(e Event) bool { return e.Text == "after-bcast" })
		for _, e := range logBuf.events(t) {
			if e.Text == "bcast" {
				t.Errorf("broadcast datagram was diverted: %+v", e)
			}
		}
	})
	t.Logf("responders.jsonl:\n%s", logBuf.String())
}
