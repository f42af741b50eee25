// Package simnet is the lab's simulated internet: responders that answer a
// guest VM from the bridge address of the isolated lab network. DNS answers
// every name with the lab address, NTP serves time, HTTP answers every URL
// (and the OS connectivity checks what they expect), HTTPS presents a
// certificate for any name from a per-lab CA, QUIC handshakes with the same
// CA, and catch-all TCP/UDP listeners record the first bytes of anything
// else. Every event is one JSON line (see Event).
//
// Start binds its sockets (and the conntrack netlink socket it uses to find
// original destinations of redirected datagrams) on the calling goroutine's
// thread, so calling it from a thread switched into the lab network
// namespace puts every listener there. InstallRedirect then diverts what a
// guest sends to any address onto these listeners. Typical use, after the
// lab bridge has its address:
//
//	ca, _ := simnet.LoadOrCreateCA(labDir)          // guest images trust ca.pem
//	var r *simnet.Responders
//	netns.Do(name, func() error {                  // a thread inside the lab namespace
//		r, err = simnet.Start(ctx, simnet.Config{Addr: bridgeAddr, Ports: simnet.DefaultPorts(), CA: ca, Log: jsonlFile})
//		return err
//	})
//	defer r.Close()
//	simnet.InstallRedirect(ctx, name, bridge, bridgeAddr, r.Addrs())
//	defer simnet.RemoveRedirect(ctx, name, bridge, bridgeAddr, r.Addrs())
package simnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Disabled as a port number turns a responder off.
const Disabled = -1

// Ports are the listening ports. 0 asks the kernel for a free port (tests);
// read the bound ones back with Responders.Addrs. Disabled turns a service
// off. DNS listens on UDP and TCP on the same port.
type Ports struct {
	DNS         int
	NTP         int
	HTTP        int
	HTTPS       int
	QUIC        int // UDP
	CatchAllTCP int
	CatchAllUDP int
}

// DefaultPorts are the lab's ports: the well-known ones, and 9999/9998 for
// the catch-all listeners that the redirect rules feed.
func DefaultPorts() Ports {
	return Ports{DNS: 53, NTP: 123, HTTP: 80, HTTPS: 443, QUIC: 443, CatchAllTCP: 9999, CatchAllUDP: 9998}
}

// Config configures Start.
type Config struct {
	// Addr is the address to bind (the lab bridge address); DNS A answers
	// carry it when it is IPv4.
	Addr netip.Addr
	// AAAA, when valid, is the IPv6 address DNS AAAA answers carry; without
	// it AAAA queries get NOERROR with no answer, so guests use IPv4.
	AAAA netip.Addr
	// NamePool, when valid, gives every name its own IPv4 address from this
	// prefix (A answers, and PTR back to the name) instead of Addr. In a lab
	// where one responder answers everything, distinct addresses per name keep
	// the capture attributable: a connection to 198.18.3.7 shows which name the
	// guest looked up, as on the real internet. The redirect rules send every
	// address to the responders, so these need no route.
	NamePool netip.Prefix
	Ports    Ports
	// CA signs the HTTPS and QUIC certificates; required unless both are Disabled.
	CA *CA
	// Log receives one JSON line per event; nil discards. Writes are
	// serialised; Close does not close it (the caller owns the file).
	Log io.Writer
	// Now is the clock for NTP answers, certificate validity and event
	// timestamps; nil means time.Now.
	Now func() time.Time
	// KeyLog, when set, receives the secrets of every TLS and QUIC session
	// the HTTPS and QUIC responders terminate, one NSS key log line per
	// Write (crypto/tls's KeyLogWriter), so the capture can be decrypted.
	KeyLog io.Writer
}

// Responders are the running listeners. Close stops them all.
type Responders struct {
	cfg   Config
	now   func() time.Time
	log   *eventLog
	dns   dnsAnswerer
	ports Ports

	done      chan struct{}
	stopCtx   func() bool
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	closed  bool
	conns   map[net.Conn]struct{}
	closers []func() error
	wg      sync.WaitGroup

	catchAllUDPTransparent bool
	ct                     *conntrack // nil when conntrack cannot be queried
}

// Start binds every enabled responder on cfg.Addr and serves until Close or
// until ctx is done. On error nothing stays open.
func Start(ctx context.Context, cfg Config) (*Responders, error) {
	if !cfg.Addr.IsValid() {
		return nil, errors.New("simnet: Config.Addr is not set: pass the lab bridge address")
	}
	if cfg.CA == nil && (cfg.Ports.HTTPS != Disabled || cfg.Ports.QUIC != Disabled) {
		return nil, errors.New("simnet: Config.CA is nil: create one with NewCA or LoadOrCreateCA, or disable HTTPS and QUIC")
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Responders{
		cfg:   cfg,
		now:   cfg.Now,
		log:   &eventLog{w: cfg.Log, now: cfg.Now},
		ports: Ports{Disabled, Disabled, Disabled, Disabled, Disabled, Disabled, Disabled},
		done:  make(chan struct{}),
		conns: make(map[net.Conn]struct{}),
	}
	if cfg.Addr.Is4() || cfg.Addr.Is4In6() {
		r.dns.a = cfg.Addr.Unmap()
	}
	if cfg.NamePool.IsValid() {
		if !cfg.NamePool.Addr().Is4() || cfg.NamePool.Bits() > 24 {
			return nil, fmt.Errorf("simnet: NamePool %s: want an IPv4 prefix of /24 or larger", cfg.NamePool)
		}
		r.dns.pool = newNamePool(cfg.NamePool.Masked())
	}
	if cfg.AAAA.IsValid() && cfg.AAAA.Is6() && !cfg.AAAA.Is4In6() {
		r.dns.aaaa = cfg.AAAA
	}
	if ct, err := openConntrack(); err == nil {
		r.ct = ct
		r.addCloser(ct)
	} else {
		r.log.log(Event{Service: "simnet", Detail: "original destinations of redirected DNS/NTP/QUIC datagrams unavailable: " + err.Error()})
	}
	if err := r.start(ctx); err != nil {
		return nil, errors.Join(err, r.Close())
	}
	r.stopCtx = context.AfterFunc(ctx, func() { r.Close() })
	return r, nil
}

func (r *Responders) start(ctx context.Context) error {
	p := r.cfg.Ports
	if p.DNS != Disabled {
		if err := r.startDNS(ctx, p.DNS); err != nil {
			return err
		}
	}
	if p.NTP != Disabled {
		c, err := r.listenUDP(ctx, "ntp", p.NTP, nil)
		if err != nil {
			return err
		}
		r.ports.NTP = c.LocalAddr().(*net.UDPAddr).Port
		r.goServe(func() { r.serveNTP(c) })
	}
	if p.HTTP != Disabled {
		ln, err := r.listenTCP(ctx, "http", p.HTTP)
		if err != nil {
			return err
		}
		r.ports.HTTP = ln.Addr().(*net.TCPAddr).Port
		r.serveHTTP(r.newHTTPServer("http"), ln)
	}
	if p.HTTPS != Disabled {
		ln, err := r.listenTCP(ctx, "https", p.HTTPS)
		if err != nil {
			return err
		}
		r.ports.HTTPS = ln.Addr().(*net.TCPAddr).Port
		srv := r.newHTTPServer("https")
		// HTTP/2 and HTTP/1.1, as a real web server speaks them: with
		// the session secrets logged, the requests are readable in the capture.
		r.serveHTTP(srv, tls.NewListener(ln, r.tlsConfig("tls", "tcp", []string{"h2", "http/1.1"})))
	}
	if p.QUIC != Disabled {
		if err := r.startQUIC(ctx, p.QUIC); err != nil {
			return err
		}
	}
	if p.CatchAllTCP != Disabled {
		ln, err := r.listenTCP(ctx, "catch-all tcp", p.CatchAllTCP)
		if err != nil {
			return err
		}
		r.ports.CatchAllTCP = ln.Addr().(*net.TCPAddr).Port
		r.goServe(func() { r.acceptLoop(ln, "tcp", r.serveCatchAllTCP) })
	}
	if p.CatchAllUDP != Disabled {
		c, err := r.listenUDP(ctx, "catch-all udp", p.CatchAllUDP, transparentUDPControl(&r.catchAllUDPTransparent))
		if err != nil {
			return err
		}
		r.ports.CatchAllUDP = c.LocalAddr().(*net.UDPAddr).Port
		r.goServe(func() { r.serveCatchAllUDP(c) })
	}
	return nil
}

// startDNS binds UDP and TCP on one port; with port 0 the UDP port the kernel
// picked may be taken for TCP, so it retries a few times.
func (r *Responders) startDNS(ctx context.Context, port int) error {
	for attempt := 0; ; attempt++ {
		uc, err := r.listenUDP(ctx, "dns", port, nil)
		if err != nil {
			return err
		}
		bound := uc.LocalAddr().(*net.UDPAddr).Port
		ln, err := r.listenTCP(ctx, "dns", bound)
		if err != nil {
			if port == 0 && attempt < 10 {
				r.removeCloser(uc)
				continue
			}
			return err
		}
		r.ports.DNS = bound
		r.goServe(func() { r.serveDNSUDP(uc) })
		r.goServe(func() { r.acceptLoop(ln, "dns", r.serveDNSTCP) })
		return nil
	}
}

func (r *Responders) hostPort(port int) string {
	return net.JoinHostPort(r.cfg.Addr.String(), strconv.Itoa(port))
}

func (r *Responders) listenUDP(ctx context.Context, what string, port int, control func(string, string, syscall.RawConn) error) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: control}
	pc, err := lc.ListenPacket(ctx, "udp", r.hostPort(port))
	if err != nil {
		return nil, fmt.Errorf("simnet: listen %s on udp %s: %w (is the bridge address up, the port free, and are we in the lab namespace?)", what, r.hostPort(port), err)
	}
	r.addCloser(pc)
	return pc.(*net.UDPConn), nil
}

func (r *Responders) listenTCP(ctx context.Context, what string, port int) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", r.hostPort(port))
	if err != nil {
		return nil, fmt.Errorf("simnet: listen %s on tcp %s: %w (is the bridge address up, the port free, and are we in the lab namespace?)", what, r.hostPort(port), err)
	}
	r.addCloser(ln)
	return ln, nil
}

func (r *Responders) addCloser(c io.Closer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closers = append(r.closers, c.Close)
}

// removeCloser closes c now and forgets it (only used while starting).
func (r *Responders) removeCloser(c io.Closer) {
	c.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closers = r.closers[:len(r.closers)-1]
}

func (r *Responders) goServe(f func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

func (r *Responders) serveHTTP(srv *http.Server, ln net.Listener) {
	// Count connection goroutines so Close waits for them: StateNew runs
	// before Serve can return, StateClosed/Hijacked as the goroutine ends.
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			r.wg.Add(1)
		case http.StateClosed, http.StateHijacked:
			r.wg.Done()
		}
	}
	r.mu.Lock()
	r.closers = append(r.closers, srv.Close)
	r.mu.Unlock()
	r.goServe(func() { srv.Serve(ln) })
}

func (r *Responders) closing() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// acceptLoop serves each connection on its own goroutine, tracked so Close
// can close it and wait for it.
func (r *Responders) acceptLoop(ln net.Listener, service string, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if r.closing() || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.log(Event{Service: service, Proto: "tcp", Detail: "accept: " + err.Error()})
			time.Sleep(50 * time.Millisecond) // e.g. EMFILE: back off instead of spinning
			continue
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			defer func() {
				r.mu.Lock()
				delete(r.conns, c)
				r.mu.Unlock()
			}()
			handle(c)
		}()
	}
}

// Addrs returns the bound ports (Disabled for services that are off).
func (r *Responders) Addrs() Ports { return r.ports }

// Addr returns the address the responders listen on.
func (r *Responders) Addr() netip.Addr { return r.cfg.Addr }

// CatchAllUDPTransparent reports whether the catch-all UDP socket got
// IP_TRANSPARENT, which the TPROXY redirect needs (it requires CAP_NET_ADMIN).
func (r *Responders) CatchAllUDPTransparent() bool { return r.catchAllUDPTransparent }

// Close stops every listener, closes open connections and waits for every
// goroutine Start created. It is safe to call more than once.
func (r *Responders) Close() error {
	r.closeOnce.Do(func() {
		if r.stopCtx != nil {
			r.stopCtx()
		}
		r.mu.Lock()
		r.closed = true
		close(r.done)
		closers := r.closers
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		r.wg.Wait()
		errs = append(errs, r.log.writeErr())
		if err := errors.Join(errs...); err != nil {
			r.closeErr = fmt.Errorf("simnet: close: %w", err)
		}
	})
	return r.closeErr
}

// udpDst is the destination a datagram from client to the socket bound at
// local was originally sent to: conntrack's record when the REDIRECT rule
// rewrote it, else local itself.
func (r *Responders) udpDst(local net.Addr, client netip.AddrPort) string {
	l, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return local.String()
	}
	if d, ok := r.ct.origDstUDP(l, client); ok {
		return d.String()
	}
	return l.String()
}

func newErrorLog(w io.Writer) *log.Logger { return log.New(w, "", 0) }
