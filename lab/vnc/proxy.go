package vnc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// InputKind says what a viewer did.
type InputKind int

const (
	// Key is a key pressed or released (Down, Keysym).
	Key InputKind = iota + 1
	// Pointer is the pointer moved or its buttons changed (Buttons, X, Y).
	Pointer
)

// Input is one key or pointer event a viewer sent, as the proxy read it.
type Input struct {
	Time   time.Time
	Viewer int // which connection, counted from 1
	Kind   InputKind
	// Key: whether it went down, and its X keysym (RFC 6143 7.5.4).
	Down   bool
	Keysym uint32
	// Pointer: the button mask (bit 0 left, 1 middle, 2 right, 3 and 4 the
	// wheel up and down) and the position in screen pixels.
	Buttons uint8
	X, Y    int
}

// Config says where the machine's own VNC server is and who sees the input.
type Config struct {
	// Dial connects to the machine's VNC server (QEMU's unix socket).
	Dial func(ctx context.Context) (net.Conn, error)
	// OnInput, when set, is called with every key and pointer event before
	// the event goes on to the machine: a recorder can take a screenshot of
	// what the person saw when they pressed. Calls from several viewers may
	// come at once.
	OnInput func(Input)
	// Logger receives connections and errors; nil discards.
	Logger *slog.Logger
}

// Proxy serves a machine's screen to VNC viewers on a local address.
type Proxy struct {
	cfg Config
	ln  net.Listener
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   map[net.Conn]bool
	viewers int
}

// CheckAddr accepts only loopback addresses: the proxy asks for no password,
// so anyone who can reach it drives the machine. Use an SSH tunnel to watch
// from another host. An empty host means 127.0.0.1.
func CheckAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("display address %q: want host:port, like 127.0.0.1:5901: %w", addr, err)
	}
	switch host {
	case "":
		host = "127.0.0.1"
	case "localhost":
	default:
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsLoopback() {
			return "", fmt.Errorf("display address %q: only loopback addresses (127.0.0.1, [::1], localhost): the VNC display has no password; reach it from elsewhere through an SSH tunnel (ssh -L 5901:127.0.0.1:5901 labhost)", addr)
		}
	}
	return net.JoinHostPort(host, port), nil
}

// Listen starts serving viewers on addr (see CheckAddr) until Close.
func Listen(addr string, cfg Config) (*Proxy, error) {
	addr, err := CheckAddr(addr)
	if err != nil {
		return nil, err
	}
	if cfg.Dial == nil {
		return nil, errors.New("vnc: Config.Dial is required")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("display: %w (is another viewer session or program using the port?)", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{cfg: cfg, ln: ln, log: log, ctx: ctx, cancel: cancel, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address viewers connect to.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Close stops listening, disconnects every viewer and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() error {
	p.cancel()
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// track registers a connection so Close can end it; false when closing.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() == nil {
				p.log.Error("display: accept", "err", err)
			}
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.mu.Lock()
		p.viewers++
		n := p.viewers
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			err := p.serve(c, n)
			switch {
			case err == nil, p.ctx.Err() != nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
				p.log.Info("display: viewer left", "viewer", n, "from", c.RemoteAddr())
			default:
				p.log.Warn("display: viewer dropped", "viewer", n, "from", c.RemoteAddr(), "err", err)
			}
		}()
	}
}

// handshakeTimeout bounds each handshake: a viewer that connects and says
// nothing must not hold a goroutine forever.
const handshakeTimeout = 30 * time.Second

// serve runs one viewer's session: handshakes on both sides, then the
// machine's updates copied to the viewer as they are, and the viewer's
// messages read one by one, input reported, and passed on.
func (p *Proxy) serve(viewer net.Conn, n int) error {
	viewer.SetDeadline(time.Now().Add(handshakeTimeout))
	version, err := acceptVersion(viewer)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(p.ctx, handshakeTimeout)
	defer cancel()
	machine, err := p.cfg.Dial(ctx)
	if err != nil {
		refuse(viewer, version, "firstboot: the machine's screen is not available: "+err.Error())
		return fmt.Errorf("connecting to the machine's VNC server: %w", err)
	}
	if !p.track(machine) {
		machine.Close()
		return nil
	}
	defer p.untrack(machine)
	machine.SetDeadline(time.Now().Add(handshakeTimeout))
	init, err := clientHandshake(machine)
	if err != nil {
		refuse(viewer, version, "firstboot: the machine's VNC server: "+err.Error())
		return fmt.Errorf("machine's VNC server: %w", err)
	}
	if err := acceptSecurity(viewer, version); err != nil {
		return err
	}
	if _, err := viewer.Write(init.marshal()); err != nil {
		return err
	}
	viewer.SetDeadline(time.Time{})
	machine.SetDeadline(time.Time{})
	p.log.Info("display: viewer connected", "viewer", n, "from", viewer.RemoteAddr(), "screen", fmt.Sprintf("%dx%d", init.Width, init.Height))

	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(viewer, machine)
		viewer.Close()
		done <- err
	}()
	err = p.relayInput(bufio.NewReader(viewer), machine, n)
	machine.Close()
	return errors.Join(err, <-done)
}

// timedMessage is a viewer message and when it arrived.
type timedMessage struct {
	msg []byte
	at  time.Time
}

// relayInput passes the viewer's messages on to the machine, reporting key
// and pointer events first. Messages are read and timestamped as they
// arrive, on a goroutine of their own, and input goes on with the spacing
// the viewer gave it: when OnInput takes time (a screenshot), the events
// queued behind it are not bunched together. A press and its release in
// one USB tablet report would be no click at all.
func (p *Proxy) relayInput(r *bufio.Reader, machine io.Writer, n int) error {
	msgs := make(chan timedMessage, 256)
	readErr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			msg, err := readClientMessage(r)
			if err != nil {
				readErr <- err
				close(msgs)
				return
			}
			select {
			case msgs <- timedMessage{msg, time.Now()}:
			case <-done:
				return
			}
		}
	}()
	var prevAt, prevSent time.Time
	for m := range msgs {
		msg := m.msg
		switch msg[0] {
		case msgSetEncodings:
			msg = filterEncodings(msg)
		case msgKeyEvent, msgPointerEvent:
			if !prevSent.IsZero() {
				if wait := time.Until(prevSent.Add(m.at.Sub(prevAt))); wait > 0 {
					time.Sleep(wait)
				}
			}
			if p.cfg.OnInput != nil {
				p.cfg.OnInput(parseInput(msg, n, m.at))
			}
			prevAt = m.at
		}
		if _, err := machine.Write(msg); err != nil {
			return err
		}
		if msg[0] == msgKeyEvent || msg[0] == msgPointerEvent {
			prevSent = time.Now()
		}
	}
	return <-readErr
}

// parseInput reads a KeyEvent or PointerEvent message.
func parseInput(msg []byte, viewer int, t time.Time) Input {
	in := Input{Time: t, Viewer: viewer}
	if msg[0] == msgKeyEvent {
		in.Kind, in.Down, in.Keysym = Key, msg[1] != 0, binary.BigEndian.Uint32(msg[4:])
		return in
	}
	in.Kind, in.Buttons = Pointer, msg[1]
	in.X, in.Y = int(binary.BigEndian.Uint16(msg[2:])), int(binary.BigEndian.Uint16(msg[4:]))
	return in
}

// DialUnix returns a Config.Dial for a unix socket path.
func DialUnix(path string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}
