package trafficgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/firstboot/firstboot/internal/testnet"
)

// bootNames are what a freshly installed OS typically asks for first.
func bootNames() []string {
	return []string{
		"deb.debian.org", "security.debian.org", "connectivity-check.ubuntu.com", "ntp.ubuntu.com",
		"api.snapcraft.io", "motd.ubuntu.com", "detectportal.firefox.com", "www.msftconnecttest.com",
		"ctldl.windowsupdate.com", "settings-win.data.microsoft.com", "captive.apple.com",
		"gs.apple.com", "ocsp.digicert.com", "update.googleapis.com", "incoming.telemetry.mozilla.org",
		"example.com",
	}
}

// volumeName is the k-th of the names the bulk rounds cycle through.
func volumeName(k int) string {
	zones := []string{"example.net", "example.org", "cdn.example.com"}
	return fmt.Sprintf("host%02d.%s", k%40, zones[k%len(zones)])
}

func certNames() []string {
	return append(bootNames(), "*.example.net", "*.example.org", "*.cdn.example.com")
}

// gen drives the clients inside the client namespace.
type gen struct {
	ns       *testnet.Namespace
	obs      *observed
	logf     func(string, ...any)
	cfg      Config
	dir      string // scratch directory for scripts and batch files
	resolver *net.Resolver
	web      *http.Client
	dials    atomic.Uint64
}

func (g *gen) init() {
	g.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return g.ns.Dial(ctx, network, net.JoinHostPort(ServerV4, "53"))
	}}
	g.web = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext:       g.dialName,
		DisableKeepAlives: true, // every request is its own connection, as with many small clients
		// The lab certificate is self-signed; what matters here is the handshake on the wire.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
	}}
}

func (g *gen) closeIdle() { g.web.CloseIdleConnections() }

// lookup resolves name through the lab DNS server (A and AAAA queries).
func (g *gen) lookup(ctx context.Context, name string) ([]netip.Addr, error) {
	g.obs.add(g.obs.dns, name)
	addrs, err := g.resolver.LookupNetIP(ctx, "ip", name+".")
	if err != nil {
		return nil, fmt.Errorf("trafficgen: resolve %s: %w", name, err)
	}
	return addrs, nil
}

// dialName resolves like a real client, then connects from the client
// namespace; one connection in four goes over IPv6.
func (g *gen) dialName(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return g.ns.Dial(ctx, network, addr)
	}
	addrs, err := g.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	want6 := g.dials.Add(1)%4 == 3
	var pick netip.Addr
	for _, a := range addrs {
		if a.Is6() == want6 || !pick.IsValid() {
			pick = a
		}
	}
	if !pick.IsValid() {
		return nil, fmt.Errorf("trafficgen: %s has no address", host)
	}
	return g.ns.Dial(ctx, network, net.JoinHostPort(pick.String(), port))
}

// get fetches a URL with Go's client and discards the body.
func (g *gen) get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "firstboot-trafficgen/1")
	if req.URL.Scheme == "http" {
		g.obs.add(g.obs.httpHost, req.URL.Hostname())
	} else {
		g.obs.add(g.obs.sni, req.URL.Hostname())
	}
	resp, err := g.web.Do(req)
	if err != nil {
		return fmt.Errorf("trafficgen: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("trafficgen: GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("trafficgen: GET %s: %s", url, resp.Status)
	}
	return nil
}

// run runs a client program in the client namespace with a deadline.
func (g *gen) run(ctx context.Context, timeout time.Duration, name string, args ...string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("trafficgen: %s not found: install it with scripts/provision.sh: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := g.ns.Run(ctx, name, args...)
	return err
}

// curl fetches url; resolve pins the name to the server (curl --resolve), so no
// DNS query is sent for it.
func (g *gen) curl(ctx context.Context, url string, resolve bool, extra ...string) error {
	host, port := urlHostPort(url)
	args := []string{"-sS", "-k", "-o", "/dev/null", "--max-time", "60", "-A", "curl/7.88.1"}
	if resolve {
		args = append(args, "--resolve", host+":"+port+":"+ServerV4)
	} else {
		g.obs.add(g.obs.dns, host)
	}
	if strings.HasPrefix(url, "https:") {
		g.obs.add(g.obs.sni, host)
	} else {
		g.obs.add(g.obs.httpHost, host)
	}
	return g.run(ctx, 90*time.Second, "curl", append(append(args, extra...), url)...)
}

func urlHostPort(url string) (host, port string) {
	rest, _ := strings.CutPrefix(url, "http://")
	port = "80"
	if r, ok := strings.CutPrefix(url, "https://"); ok {
		rest, port = r, "443"
	}
	host, _, _ = strings.Cut(rest, "/")
	return host, port
}

// boot is the first-boot pass: DHCP, NTP, a burst of DNS, connectivity checks,
// TLS from several stacks, QUIC.
func (g *gen) boot(ctx context.Context) error {
	// DHCP first, like a booting machine: the interface has no IPv4 address
	// until the lease is applied by the script.
	script := filepath.Join(g.dir, "udhcpc.script")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		return fmt.Errorf("trafficgen: udhcpc script: %w", err)
	}
	if err := g.run(ctx, 20*time.Second, "busybox", "udhcpc", "-i", Iface, "-f", "-q", "-n", "-t", "3", "-T", "1",
		"-s", script, "-x", "hostname:"+DHCPHostname, "-V", "firstboot-trafficgen"); err != nil {
		return err
	}
	// chronyd -Q asks the server and exits without touching the clock.
	g.obs.add(g.obs.ntp, ServerV4)
	if err := g.run(ctx, 20*time.Second, "chronyd", "-Q", "-t", "8", "-u", "root",
		"server "+ServerV4+" iburst maxsamples 1", "pidfile "+filepath.Join(g.dir, "chronyd.pid"),
		"cmdport 0"); err != nil {
		return err
	}
	// dig in batch mode: A, AAAA and HTTPS records for the boot names.
	var batch strings.Builder
	for _, n := range bootNames() {
		for _, typ := range []string{"A", "AAAA", "HTTPS"} {
			fmt.Fprintf(&batch, "%s %s\n", n, typ)
		}
		g.obs.add(g.obs.dns, n)
	}
	bf := filepath.Join(g.dir, "dig.txt")
	if err := os.WriteFile(bf, []byte(batch.String()), 0o644); err != nil {
		return fmt.Errorf("trafficgen: dig batch file: %w", err)
	}
	if err := g.run(ctx, 60*time.Second, "dig", "@"+ServerV4, "+tries=1", "+time=2", "+nocookie", "-f", bf); err != nil {
		return err
	}
	// Connectivity checks in plain HTTP (names resolved through the lab DNS), then HTTPS.
	for _, u := range []string{"http://connectivity-check.ubuntu.com/", "http://detectportal.firefox.com/success.txt",
		"http://www.msftconnecttest.com/connecttest.txt", "http://captive.apple.com/hotspot-detect.html"} {
		if err := g.curl(ctx, u, false, "-4"); err != nil {
			return err
		}
	}
	for i, u := range []string{"https://deb.debian.org/debian/dists/bookworm/InRelease", "https://api.snapcraft.io/v2/snaps/refresh",
		"https://update.googleapis.com/service/update2", "https://example.com/"} {
		if err := g.curl(ctx, u, i%2 == 0, "-4"); err != nil {
			return err
		}
	}
	// OpenSSL's own client, TLS 1.3 and 1.2: other ClientHellos than curl's.
	for _, c := range []struct{ name, version string }{{"security.debian.org", "-tls1_3"}, {"ocsp.digicert.com", "-tls1_2"}} {
		g.obs.add(g.obs.sni, c.name)
		if err := g.run(ctx, 20*time.Second, "sh", "-c",
			"openssl s_client -connect "+ServerV4+":443 -servername "+c.name+" "+c.version+" -brief </dev/null"); err != nil {
			return err
		}
	}
	for _, n := range []string{"www.google-analytics.example.com", "incoming.telemetry.mozilla.org"} {
		if err := g.quic(ctx, n, nil); err != nil {
			return err
		}
	}
	// A ClientHello too large for one Initial packet (as with post-quantum key
	// shares and long ALPN lists), so readers must join CRYPTO frames across packets.
	var alpn []string
	for i := range 60 {
		alpn = append(alpn, fmt.Sprintf("firstboot-proto-%02d", i))
	}
	if err := g.quic(ctx, "big-hello.example.net", alpn); err != nil {
		return err
	}
	return nil
}

// udhcpcScript applies a lease the way Debian's udhcpc script does, minus
// routes and resolv.conf (the namespace has its own resolver and no way out).
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew) ip addr replace "$ip/${mask:-24}" dev "$interface" ;;
esac
exit 0
`

// quic runs one QUIC connection with SNI name and echoes a message over it;
// extraALPN is offered ahead of the protocol the server speaks.
func (g *gen) quic(ctx context.Context, name string, extraALPN []string) error {
	g.obs.add(g.obs.quicSNI, name)
	pc, err := g.ns.ListenPacket("udp", ":0")
	if err != nil {
		return fmt.Errorf("trafficgen: QUIC client socket: %w", err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := quic.Dial(ctx, pc, &net.UDPAddr{IP: net.ParseIP(ServerV4), Port: 443},
		&tls.Config{ServerName: name, NextProtos: append(extraALPN, quicALPN), InsecureSkipVerify: true}, nil) //nolint:gosec
	if err != nil {
		return fmt.Errorf("trafficgen: QUIC to %s: %w", name, err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("trafficgen: QUIC stream to %s: %w", name, err)
	}
	msg := "hello " + name
	if _, err := st.Write([]byte(msg)); err != nil {
		return fmt.Errorf("trafficgen: QUIC write to %s: %w", name, err)
	}
	_ = st.Close()
	got, err := io.ReadAll(st)
	if err != nil || string(got) != msg {
		return fmt.Errorf("trafficgen: QUIC echo from %s: got %q, %v", name, got, err)
	}
	return nil
}

// round is one unit of steady traffic: one large download, many short
// connections and lookups; together they give about 2,500 packets per MB,
// the mix of a real network (full-size segments plus many small packets).
func (g *gen) round(ctx context.Context, r int) error {
	name := volumeName(r)
	bulk := fmt.Sprintf("/bytes/%d", g.cfg.BulkBytes)
	var err error
	switch r % 4 {
	case 0:
		err = g.curl(ctx, "http://"+name+bulk, false)
	case 1:
		err = g.curl(ctx, "https://"+name+bulk, r%8 == 1)
	case 2:
		err = g.get(ctx, "https://"+name+bulk)
	case 3:
		err = g.get(ctx, "http://"+name+bulk)
	}
	if err != nil {
		return err
	}

	const workers = 4
	jobs := make(chan func() error)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				if err := job(); err != nil && errs[w] == nil {
					errs[w] = err
				}
			}
		}()
	}
	for i := range g.cfg.SmallConns {
		n := volumeName(r*7 + i)
		scheme := "http"
		if i%4 == 3 {
			scheme = "https"
		}
		url := fmt.Sprintf("%s://%s/r%d/item%d", scheme, n, r, i)
		jobs <- func() error { return g.get(ctx, url) }
	}
	for i := range g.cfg.DNSLookups {
		n := fmt.Sprintf("q%d.%s", i%25, volumeName(r+i))
		jobs <- func() error { _, err := g.lookup(ctx, n); return err }
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if r%10 == 9 {
		g.obs.add(g.obs.sni, name)
		if err := g.run(ctx, 20*time.Second, "sh", "-c",
			"openssl s_client -connect "+ServerV4+":443 -servername "+name+" -brief </dev/null"); err != nil {
			return err
		}
	}
	return ctx.Err()
}
