package trafficgen

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/firstboot/firstboot/internal/testnet"
)

// servers is everything answering inside the server namespace.
type servers struct {
	http, https *http.Server
	quic        *quic.Listener
	ntp         net.PacketConn
	dnsmasq     *exec.Cmd
	dnsmasqDone chan error
}

func (s *servers) Close() error {
	var errs []error
	for _, srv := range []*http.Server{s.http, s.https} {
		if srv != nil {
			errs = append(errs, ignoreClosed(srv.Close()))
		}
	}
	if s.quic != nil {
		errs = append(errs, ignoreClosed(s.quic.Close()))
	}
	if s.ntp != nil {
		errs = append(errs, ignoreClosed(s.ntp.Close()))
	}
	if s.dnsmasq != nil && s.dnsmasq.Process != nil {
		_ = s.dnsmasq.Process.Kill()
		<-s.dnsmasqDone
	}
	return errors.Join(errs...)
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// startServers starts DNS+DHCP (dnsmasq), HTTP, HTTPS, QUIC and NTP in ns.
func startServers(ctx context.Context, ns *testnet.Namespace, iface, dir string, cert tls.Certificate) (*servers, error) {
	s := &servers{}
	fail := func(err error) (*servers, error) { return nil, errors.Join(err, s.Close()) }

	if _, err := exec.LookPath("dnsmasq"); err != nil {
		return fail(fmt.Errorf("trafficgen: dnsmasq not found (Debian package dnsmasq-base, see scripts/provision.sh): %w", err))
	}
	args := []string{"--no-daemon", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--bind-interfaces", "--interface=" + iface, "--user=root", "--pid-file"}
	// dnsmasq answers every name (A and AAAA); the most specific zone wins.
	for _, z := range webZones() {
		args = append(args, "--address=/"+z.zone+"/"+z.v4, "--address=/"+z.zone+"/"+z.v6)
	}
	s.dnsmasq = ns.Command(context.WithoutCancel(ctx), "dnsmasq", append(args, "--no-ping", "--dhcp-authoritative",
		"--dhcp-range=10.77.0.0,static,255.255.255.0,1h", "--dhcp-host="+ClientMAC+","+ClientV4,
		"--dhcp-option=option:router,"+ServerV4, "--dhcp-option=option:dns-server,"+ServerV4,
		"--dhcp-leasefile="+filepath.Join(dir, "dnsmasq.leases"))...)
	var dnsmasqOut strings.Builder
	s.dnsmasq.Stdout, s.dnsmasq.Stderr = &dnsmasqOut, &dnsmasqOut
	if err := s.dnsmasq.Start(); err != nil {
		return fail(fmt.Errorf("trafficgen: start dnsmasq: %w", err))
	}
	s.dnsmasqDone = make(chan error, 1)
	go func() { s.dnsmasqDone <- s.dnsmasq.Wait() }()

	mux := http.NewServeMux()
	mux.HandleFunc("/bytes/{n}", serveBytes)
	mux.HandleFunc("/", servePage)
	l, err := ns.Listen("tcp", ":80")
	if err != nil {
		return fail(fmt.Errorf("trafficgen: HTTP listener: %w", err))
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(l) }()

	tl, err := ns.Listen("tcp", ":443")
	if err != nil {
		return fail(fmt.Errorf("trafficgen: HTTPS listener: %w", err))
	}
	s.https = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go func() { _ = s.https.ServeTLS(tl, "", "") }()

	qc, err := ns.ListenPacket("udp", ":443")
	if err != nil {
		return fail(fmt.Errorf("trafficgen: QUIC socket: %w", err))
	}
	s.quic, err = quic.Listen(qc, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h3", quicALPN}}, nil)
	if err != nil {
		qc.Close()
		return fail(fmt.Errorf("trafficgen: QUIC listener: %w", err))
	}
	go serveQUIC(s.quic)

	s.ntp, err = ns.ListenPacket("udp", ":123")
	if err != nil {
		return fail(fmt.Errorf("trafficgen: NTP socket: %w", err))
	}
	go serveNTP(s.ntp)

	// dnsmasq is ready once it answers; until then queries are refused by the kernel.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := probeDNS(ctx, ns); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fail(fmt.Errorf("trafficgen: dnsmasq does not answer on %s:53: %w; dnsmasq said: %s", ServerV4, err, dnsmasqOut.String()))
		}
		select {
		case err := <-s.dnsmasqDone:
			s.dnsmasqDone <- err
			return fail(fmt.Errorf("trafficgen: dnsmasq exited: %v: %s", err, dnsmasqOut.String()))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return s, nil
}

func probeDNS(ctx context.Context, ns *testnet.Namespace) error {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return ns.Dial(ctx, network, net.JoinHostPort(ServerV4, "53"))
	}}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := r.LookupNetIP(ctx, "ip4", "probe.invalid.")
	return err
}

// noiseSize is the chunk of incompressible filler downloads are made of.
const noiseSize = 64 << 10

func serveBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
	if err != nil || n < 0 || n > 1<<30 {
		http.Error(w, "bad size", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	buf := make([]byte, noiseSize)
	rng := mrand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	_, _ = rng.Read(buf)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		n -= k
	}
}

// servePage answers like a small web or connectivity-check endpoint; the body
// length depends on the path so responses differ in size like real ones.
func servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pad := 64 + len(r.URL.Path)*37%900
	fmt.Fprintf(w, "<html><head><title>%s</title></head><body><p>%s%s</p>%s</body></html>\n",
		r.Host, r.Host, r.URL.Path, strings.Repeat("x", pad))
}

// quicALPN is the protocol the generator's QUIC client speaks: echo one stream.
const quicALPN = "firstboot-echo"

func serveQUIC(l *quic.Listener) {
	for {
		conn, err := l.Accept(context.Background())
		if err != nil {
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := conn.AcceptStream(ctx)
			if err != nil {
				return
			}
			_, _ = io.Copy(st, st)
			_ = st.Close()
		}()
	}
}

// serveNTP is a minimal NTPv4 server (RFC 5905 section 7.3): stratum 2,
// answering each client request with the origin timestamp echoed.
func serveNTP(pc net.PacketConn) {
	buf := make([]byte, 512)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 48 || buf[0]&7 != 3 { // mode 3: client
			continue
		}
		now := time.Now()
		var resp [48]byte
		resp[0] = buf[0]&0x38 | 4                           // LI 0, client's version, mode 4 (server)
		resp[1] = 2                                         // stratum
		resp[2] = buf[2]                                    // poll
		resp[3] = 0xec                                      // precision 2^-20
		binary.BigEndian.PutUint32(resp[4:], 0x00000100)    // root delay ~4 ms
		binary.BigEndian.PutUint32(resp[8:], 0x00000200)    // root dispersion ~8 ms
		copy(resp[12:16], net.ParseIP("10.77.0.254").To4()) // reference ID: upstream server
		putNTPTime(resp[16:], now.Add(-30*time.Second))     // reference timestamp
		copy(resp[24:32], buf[40:48])                       // origin = client's transmit
		putNTPTime(resp[32:], now)
		putNTPTime(resp[40:], time.Now())
		_, _ = pc.WriteTo(resp[:], addr)
	}
}

func putNTPTime(b []byte, t time.Time) {
	const eraOffset = 2208988800 // seconds from 1900 to 1970
	secs := uint64(t.Unix() + eraOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	binary.BigEndian.PutUint64(b, secs<<32|frac)
}

// selfSignedCert makes one certificate valid for every generated name, so
// clients that verify nothing (curl -k, openssl s_client) still see a real chain.
func selfSignedCert(names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("trafficgen: certificate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "firstboot trafficgen", Organization: []string{"firstboot test lab"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.ParseIP(ServerV4), net.ParseIP(ServerV6)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("trafficgen: certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
