package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/internal/owner"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/netns"
)

// Prefix marks every libvirt object firstboot creates; stale ones with it are
// removed when firstboot starts a fresh libvirtd.
const Prefix = "firstboot-"

// DefaultNetns is the lab namespace's name.
const DefaultNetns = "firstboot"

// Lab is a connection to libvirtd, started by Up or reused.
type Lab struct {
	cfg     lab.Config
	log     *slog.Logger
	conn    *golibvirt.Libvirt
	socket  string
	netns   string
	started bool
	state   State

	// FirstCall is how long libvirtd took to answer the first hypervisor call
	// (QEMU capability probe after a fresh start).
	FirstCall time.Duration

	evCancel context.CancelFunc
	evDone   chan struct{}

	mu       sync.Mutex
	machines map[string]*Machine
	networks map[string]*Network // open networks this Lab created
	owned    map[string]bool     // names of domains and networks this Lab created
	closed   bool
	kvm      *accelProbe
	caps     map[string]libvirtxml.DomainCaps // domain capabilities by "virttype/machine"
	reaped   []Orphan                         // what Up removed for processes that had ended
}

// Up starts the lab's daemons in the namespace (or reuses ones firstboot
// started earlier and that still answer), or, with cfg.LibvirtURI, connects to
// an existing libvirtd. Down undoes exactly what Up did.
//
// Before it decides about the daemons, Up reaps what firstboot processes
// that ended without cleaning up left in the lab (see Reap; Reaped says
// what): every command that brings the lab up goes through here.
func Up(ctx context.Context, cfg lab.Config) (_ *Lab, err error) {
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/firstboot"
	}
	if cfg.Netns == "" {
		cfg.Netns = DefaultNetns
	}
	if cfg.Accel == "" {
		cfg.Accel = "auto"
	}
	log := cfg.Logger
	if log == nil {
		log = discardLogger()
	}
	l := &Lab{cfg: cfg, log: log, machines: map[string]*Machine{}, owned: map[string]bool{}}

	if cfg.LibvirtURI != "" {
		sock, err := socketFromURI(cfg.LibvirtURI)
		if err != nil {
			return nil, err
		}
		l.socket = sock
		pid, err := peerPID(sock)
		if err != nil {
			return nil, fmt.Errorf("lab: libvirtd at %s: %w", cfg.LibvirtURI, err)
		}
		// Capture and responders enter whatever namespace that libvirtd
		// (and so its bridges and taps) lives in.
		l.netns = fmt.Sprintf("/proc/%d/ns/net", pid)
		if err := l.connect(ctx); err != nil {
			return nil, err
		}
		l.reapOnUp(ctx, orphaned)
		return l, l.watchEvents()
	}

	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: state dir: %w", err)
	}
	l.socket = DefaultSocket
	// The daemons serve one socket for the whole host: parallel Ups (several
	// `firstboot run`s at once) must decide in turn whether to reuse, share
	// or start them, or two would start daemons at once and fail each other.
	unlock, err := lockFile(ctx, upLock)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer unlock()
	st, err := LoadState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if processAlive(st.LibvirtdPID, "libvirtd") && socketAnswers(l.socket) {
		l.netns = st.Netns
		err := l.connectRetry(ctx)
		if err == nil {
			log.Info("lab: reusing running libvirtd", "pid", st.LibvirtdPID, "netns", st.Netns)
			l.reapOnUp(ctx, orphaned)
			if err := l.adopt(st); err != nil {
				return nil, errors.Join(err, l.Close())
			}
			return l, l.watchEvents()
		}
		log.Warn("lab: firstboot's libvirtd does not answer; restarting it", "pid", st.LibvirtdPID, "err", err)
	}
	if st.LibvirtdPID != 0 && !processAlive(st.LibvirtdPID, "libvirtd") {
		// Our libvirtd died; while its last threads exit its socket can
		// still accept for a moment.
		for deadline := time.Now().Add(10 * time.Second); socketAnswers(l.socket) && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if socketAnswers(l.socket) && !processAlive(st.LibvirtdPID, "libvirtd") {
		// Another firstboot lab (other state dir: a test, another user's
		// `lab up`) may own it; share it without taking ownership.
		ns, err := firstbootLabNetns(l.socket)
		if err != nil {
			return nil, fmt.Errorf("lab: a libvirtd that firstboot did not start answers on %s (%v): stop it, or use it with --libvirt-uri qemu:///system", l.socket, err)
		}
		l.netns = ns
		if err := l.connect(ctx); err != nil {
			return nil, err
		}
		log.Info("lab: sharing another firstboot lab's libvirtd", "netns", ns)
		l.reapOnUp(ctx, orphaned)
		return l, l.watchEvents()
	}
	// Leftovers of ours: daemons that no longer answer and their pid files.
	if err := stopDaemons(ctx, State{LibvirtdPID: st.LibvirtdPID, VirtlogdPID: st.VirtlogdPID}); err != nil {
		return nil, fmt.Errorf("lab: stopping stale daemons: %w", err)
	}

	start := time.Now()
	createdBefore := st.CreatedNetns && st.Netns == cfg.Netns
	st, err = startDaemons(ctx, cfg.Netns, cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if !cfg.Keep {
		st.setOwner(owner.Self())
	}
	// A namespace an earlier (crashed) lab created is still ours to remove.
	st.CreatedNetns = st.CreatedNetns || createdBefore
	l.started, l.state, l.netns = true, st, st.Netns
	defer func() {
		if err != nil {
			tctx, cancel := teardownContext(ctx)
			defer cancel()
			err = errors.Join(err, l.down(tctx, true))
		}
	}()
	if err := saveState(cfg.StateDir, st); err != nil {
		return nil, err
	}
	log.Info("lab: daemons started", "netns", st.Netns, "libvirtd", st.LibvirtdPID, "virtlogd", st.VirtlogdPID, "took", time.Since(start).Round(time.Millisecond))
	if err := l.connect(ctx); err != nil {
		return nil, err
	}
	// A fresh daemon: whatever an earlier one left is stale, except what a
	// live process still owns.
	l.reapOnUp(ctx, notLive)
	// A libvirtd that died leaves its networks' dnsmasq running, and a
	// restarted one does not always take them back: stop what remains.
	if err := killStaleDnsmasq(ctx); err != nil {
		return nil, err
	}
	return l, l.watchEvents()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// upLock serialises Up's choice between reusing, sharing and starting the
// daemons across firstboot processes.
const upLock = "/run/lock/firstboot-lab.lock"

// connectRetry connects to a daemon that is running and accepts on its
// socket, trying three times: restarting it for one failed connection would
// pull it from under every other run that uses it.
func (l *Lab) connectRetry(ctx context.Context) error {
	const attempts = 3
	var err error
	for attempt := 1; ; attempt++ {
		if err = l.connect(ctx); err == nil {
			return nil
		}
		l.log.Warn("lab: connecting to firstboot's libvirtd failed", "attempt", attempt, "err", err)
		if l.conn != nil {
			// Connected, but the daemon did not answer a call: drop it.
			_ = l.conn.Disconnect()
			l.conn = nil
		}
		if attempt == attempts {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// socketFromURI accepts qemu:///system with an optional ?socket=.
func socketFromURI(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("lab: libvirt URI %q: %w", uri, err)
	}
	if u.Scheme != "qemu" || u.Host != "" || u.Path != "/system" {
		return "", fmt.Errorf("lab: libvirt URI %q: only local qemu:///system (optionally ?socket=PATH) is supported", uri)
	}
	if s := u.Query().Get("socket"); s != "" {
		return s, nil
	}
	return DefaultSocket, nil
}

// peerPID asks the kernel which process serves the socket.
func peerPID(path string) (int, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return int(cred.Pid), nil
}

func (l *Lab) connect(ctx context.Context) error {
	if err := waitSocket(ctx, l.socket, 30*time.Second); err != nil {
		return err
	}
	conn := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(l.socket), dialers.WithLocalTimeout(5*time.Second)))
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := call0(cctx, "connect", func() error { return conn.ConnectToURI(golibvirt.QEMUSystem) }); err != nil {
		return fmt.Errorf("lab: %w (is libvirtd healthy? see %s/libvirtd.log)", err, l.cfg.StateDir)
	}
	l.conn = conn
	// The first hypervisor call after a fresh start waits for QEMU's
	// capability probe (about 8 s); measure it so slow hosts are visible.
	start := time.Now()
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer fcancel()
	if _, err := call(fctx, "get hypervisor version", conn.ConnectGetVersion); err != nil {
		return fmt.Errorf("lab: %w (is qemu-system-x86 installed?)", err)
	}
	l.FirstCall = time.Since(start)
	l.log.Debug("lab: connected", "socket", l.socket, "first_call", l.FirstCall.Round(time.Millisecond))
	return nil
}

// removeStale destroys and undefines firstboot's domains and networks,
// except those of live processes (pick all to take those too), and stops the
// dnsmasq processes of networks libvirtd no longer knows.
func (l *Lab) removeStale(ctx context.Context, pick func(labObject) bool) error {
	removed, err := l.sweep(ctx, pick, true)
	for _, o := range removed {
		l.log.Info("lab: removed stale", "what", o.String())
	}
	return errors.Join(err, killStaleDnsmasq(ctx))
}

// dnsmasqConfPrefix is how libvirt names a network's dnsmasq configuration.
const dnsmasqConfPrefix = "--conf-file=/var/lib/libvirt/dnsmasq/" + Prefix

// killStaleDnsmasq stops dnsmasq processes serving firstboot networks.
func killStaleDnsmasq(ctx context.Context) error {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var errs []error
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 2 || filepath.Base(args[0]) != "dnsmasq" || !strings.HasPrefix(args[1], dnsmasqConfPrefix) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		errs = append(errs, stopProcess(ctx, pid, "dnsmasq"))
	}
	return errors.Join(errs...)
}

func call2[A, B any](ctx context.Context, what string, fn func() (A, B, error)) (A, B, error) {
	type ab struct {
		a A
		b B
	}
	r, err := call(ctx, what, func() (ab, error) {
		a, b, err := fn()
		return ab{a, b}, err
	})
	return r.a, r.b, err
}

// removeDomain destroys (if running) and undefines a domain; between the two,
// beforeUndefine (if any) removes the files that go with it, so a process
// killed meanwhile leaves a definition naming them.
func (l *Lab) removeDomain(ctx context.Context, d golibvirt.Domain, beforeUndefine func()) error {
	if l.isClosed() {
		return errLabClosed
	}
	state, _, err := call2(ctx, "domain state", func() (int32, int32, error) { return l.conn.DomainGetState(d, 0) })
	if err != nil {
		if isNotFound(err) {
			if beforeUndefine != nil {
				beforeUndefine()
			}
			return nil
		}
		return err
	}
	if golibvirt.DomainState(state) != golibvirt.DomainShutoff {
		if err := call0(ctx, "destroy "+d.Name, func() error { return l.conn.DomainDestroy(d) }); err != nil && !isNotFound(err) && !isNotRunning(err) {
			return err
		}
	}
	if beforeUndefine != nil {
		beforeUndefine()
	}
	err = call0(ctx, "undefine "+d.Name, func() error {
		return l.conn.DomainUndefineFlags(d, golibvirt.DomainUndefineManagedSave|golibvirt.DomainUndefineSnapshotsMetadata|golibvirt.DomainUndefineNvram)
	})
	if err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// removeNetwork destroys (if active) and undefines a network.
func (l *Lab) removeNetwork(ctx context.Context, n golibvirt.Network) error {
	if l.isClosed() {
		return errLabClosed
	}
	active, err := call(ctx, "network active", func() (int32, error) { return l.conn.NetworkIsActive(n) })
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	if active == 1 {
		if err := call0(ctx, "destroy network "+n.Name, func() error { return l.conn.NetworkDestroy(n) }); err != nil && !isNotFound(err) {
			return err
		}
	}
	if err := call0(ctx, "undefine network "+n.Name, func() error { return l.conn.NetworkUndefine(n) }); err != nil && !isNotFound(err) {
		return err
	}
	// libvirt leaves the dnsmasq pid file and the ports directory behind.
	if strings.HasPrefix(n.Name, Prefix) {
		_ = os.Remove(filepath.Join(networkRunDir, n.Name+".pid"))
		_ = os.RemoveAll(filepath.Join(networkRunDir, n.Name))
	}
	return nil
}

// networkRunDir is libvirtd's runtime directory for networks.
const networkRunDir = "/run/libvirt/network"

func isNotFound(err error) bool {
	var e golibvirt.Error
	return errors.As(err, &e) && (e.Code == uint32(golibvirt.ErrNoDomain) || e.Code == uint32(golibvirt.ErrNoNetwork))
}

func isNotRunning(err error) bool {
	var e golibvirt.Error
	return errors.As(err, &e) && e.Code == uint32(golibvirt.ErrOperationInvalid)
}

// watchEvents subscribes to lifecycle events once for the whole lab and hands
// each "stopped" to its machine.
func (l *Lab) watchEvents() error {
	ctx, cancel := context.WithCancel(context.Background())
	evs, err := call(ctx, "subscribe lifecycle events", func() (<-chan golibvirt.DomainEventLifecycleMsg, error) {
		return l.conn.LifecycleEvents(ctx)
	})
	if err != nil {
		cancel()
		return err
	}
	l.evCancel = cancel
	l.evDone = make(chan struct{})
	go func() {
		defer close(l.evDone)
		for ev := range evs {
			if golibvirt.DomainEventType(ev.Event) != golibvirt.DomainEventStopped {
				continue
			}
			l.mu.Lock()
			m := l.machines[ev.Dom.Name]
			l.mu.Unlock()
			if m != nil {
				m.markStopped()
			}
		}
	}()
	return nil
}

// StartedDaemons reports whether this Up started libvirtd and virtlogd (and
// so Down will stop them).
func (l *Lab) StartedDaemons() bool { return l.started }

// State is what Up started (zero when it only connected).
func (l *Lab) State() State { return l.state }

// Netns is where the lab's bridges and taps live: a namespace name for
// netns.Do, or /proc/PID/ns/net of an external libvirtd.
func (l *Lab) Netns() string { return l.netns }

// adopt takes over daemons found running: those of a firstboot process that
// died without stopping them, or that its owner released, become this
// process's to stop (or, for `lab up`, permanent). Daemons of a live owner or
// of `lab up` are only shared.
func (l *Lab) adopt(st State) error {
	switch {
	case l.cfg.Keep && st.OwnerPID != 0:
		st.setOwner(owner.Owner{})
	case !l.cfg.Keep && (st.Released || st.ownerGone()):
		l.log.Info("lab: adopting the daemons of a firstboot that ended without stopping them or left them to the runs still using them",
			"owner", st.OwnerPID, "released", st.Released)
		st.setOwner(owner.Self())
		l.started, l.state = true, st
	default:
		return nil
	}
	return saveState(l.cfg.StateDir, st)
}

// Disconnected is closed when the connection to libvirtd is lost (libvirtd
// died or was stopped): a run can then end instead of waiting for events that
// will never come.
func (l *Lab) Disconnected() <-chan struct{} { return l.conn.Disconnected() }

// Conn is the underlying go-libvirt connection (for tests and diagnostics).
func (l *Lab) Conn() *golibvirt.Libvirt { return l.conn }

// Versions asks libvirtd for its own and QEMU's version.
func (l *Lab) Versions(ctx context.Context) (lab.Versions, error) {
	lv, err := call(ctx, "get library version", l.conn.ConnectGetLibVersion)
	if err != nil {
		return lab.Versions{}, err
	}
	qv, err := call(ctx, "get hypervisor version", l.conn.ConnectGetVersion)
	if err != nil {
		return lab.Versions{}, err
	}
	return lab.Versions{Libvirt: versionString(lv), QEMU: versionString(qv)}, nil
}

func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

// Close disconnects without stopping anything (the daemons keep running for
// the next command).
// Calls made after Close fail (go-libvirt reports the closed connection).
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed || l.conn == nil {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	cancelEvents, evDone := l.evCancel, l.evDone
	l.mu.Unlock()
	if cancelEvents != nil {
		cancelEvents()
		// go-libvirt deregisters the event callback when its context ends; a
		// Disconnect racing that call fails it ("procedure interrupted").
		select {
		case <-evDone:
		case <-time.After(5 * time.Second):
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := call0(ctx, "disconnect", l.conn.Disconnect)
	if errors.Is(err, golibvirt.ErrInterrupted) {
		// The daemon closed the connection before its answer to "close"
		// arrived: the connection is gone, which is what was asked.
		select {
		case <-l.conn.Disconnected():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	return err
}

// errLabClosed is returned for work asked of a Lab after Close.
var errLabClosed = errors.New("lab: connection closed")

func (l *Lab) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Down destroys the machines this Lab defined and, if Up started the daemons,
// every firstboot network and domain, the daemons and the namespace. When Up
// only connected, Down only disconnects.
func (l *Lab) Down(ctx context.Context) error { return l.down(ctx, false) }

// down is Down; upLocked says the caller (Up failing) holds upLock.
func (l *Lab) down(ctx context.Context, upLocked bool) error {
	var errs []error
	l.mu.Lock()
	ms := make([]*Machine, 0, len(l.machines))
	for _, m := range l.machines {
		ms = append(ms, m)
	}
	l.mu.Unlock()
	for _, m := range ms {
		errs = append(errs, m.Destroy(ctx))
	}
	l.mu.Lock()
	ns := make([]*Network, 0, len(l.networks))
	for _, n := range l.networks {
		ns = append(ns, n)
	}
	l.mu.Unlock()
	for _, n := range ns {
		errs = append(errs, n.Close(ctx))
	}
	if l.cfg.LibvirtURI == "" && !upLocked {
		// Whether to stop the daemons is decided in turn with other
		// processes' Ups and Downs: two runs ending at once must not each
		// see the other's machine and both leave them up.
		unlock, err := lockFile(ctx, upLock)
		if err != nil {
			errs = append(errs, fmt.Errorf("lab: %w", err))
		} else {
			defer unlock()
		}
	}
	if !l.started && l.cfg.LibvirtURI == "" {
		// The owner of these daemons may have ended or released them
		// meanwhile (it left them up for this process's machines): then
		// they are this process's to stop.
		if st, err := LoadState(l.cfg.StateDir); err == nil && st.LibvirtdPID != 0 {
			errs = append(errs, l.adopt(st))
		}
	}
	if l.started && l.conn != nil && !l.isClosed() {
		if others := l.othersRunning(ctx); len(others) > 0 {
			// Another firstboot process shares these daemons: leave them
			// (and the state file) for it, released, so that the last
			// sharer stops them even while this process still analyses.
			l.log.Warn("lab: other firstboot machines still run; leaving the daemons up", "machines", others)
			l.state.Released = true
			errs = append(errs, saveState(l.cfg.StateDir, l.state), l.Close())
			l.started = false
			return errors.Join(errs...)
		}
		errs = append(errs, l.removeStale(ctx, notLive))
	}
	errs = append(errs, l.Close())
	if l.started {
		errs = append(errs, stopDaemons(ctx, l.state))
		if err := os.Remove(statePath(l.cfg.StateDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		l.started = false
	}
	return errors.Join(errs...)
}

// Stop brings down a lab that `firstboot lab up` left running, from its state
// file: every firstboot domain and network, the daemons, the namespace.
func Stop(ctx context.Context, cfg lab.Config) error {
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/firstboot"
	}
	st, err := LoadState(cfg.StateDir)
	if err != nil {
		return err
	}
	if st.LibvirtdPID == 0 && st.VirtlogdPID == 0 {
		return nil
	}
	var errs []error
	if processAlive(st.LibvirtdPID, "libvirtd") {
		l := &Lab{cfg: cfg, log: discardLogger(), socket: DefaultSocket, machines: map[string]*Machine{}}
		if err := l.connect(ctx); err == nil {
			// `lab down` stops the lab for everyone: live runs' machines too.
			all := func(labObject) bool { return true }
			errs = append(errs, l.removeStale(ctx, all), l.Close())
		} else {
			errs = append(errs, err)
		}
	}
	errs = append(errs, stopDaemons(ctx, st))
	if err := os.Remove(statePath(cfg.StateDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Status describes a lab from its state file.
type Status struct {
	State
	LibvirtdAlive, VirtlogdAlive, NetnsExists, SocketAnswers bool
}

// GetStatus reads the state file and checks the processes (no libvirt call).
func GetStatus(cfg lab.Config) (Status, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/firstboot"
	}
	st, err := LoadState(cfg.StateDir)
	if err != nil {
		return Status{}, err
	}
	s := Status{State: st}
	s.LibvirtdAlive = processAlive(st.LibvirtdPID, "libvirtd")
	s.VirtlogdAlive = processAlive(st.VirtlogdPID, "virtlogd")
	s.NetnsExists = st.Netns != "" && netns.Exists(st.Netns)
	s.SocketAnswers = socketAnswers(DefaultSocket)
	return s, nil
}

// firstbootLabNetns tells whether the libvirtd serving socket is a firstboot
// lab daemon (it runs in a named namespace whose /etc/netns config firstboot
// wrote) and returns that namespace's name.
func firstbootLabNetns(socket string) (string, error) {
	pid, err := peerPID(socket)
	if err != nil {
		return "", err
	}
	var own unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &own); err != nil {
		return "", err
	}
	entries, _ := os.ReadDir(netns.RunDir)
	for _, e := range entries {
		var st unix.Stat_t
		if unix.Stat(netns.Path(e.Name()), &st) != nil || st.Ino != own.Ino || st.Dev != own.Dev {
			continue
		}
		conf, err := os.ReadFile(filepath.Join(labConfigDir(e.Name()), "qemu.conf"))
		if err == nil && strings.HasPrefix(string(conf), labQEMUConfMarker) {
			return e.Name(), nil
		}
		return "", fmt.Errorf("libvirtd pid %d runs in namespace %s, which is not a firstboot lab", pid, e.Name())
	}
	return "", fmt.Errorf("libvirtd pid %d does not run in a firstboot lab namespace", pid)
}

// own records a domain or network this Lab created.
func (l *Lab) own(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owned == nil {
		l.owned = map[string]bool{}
	}
	l.owned[name] = true
}

// othersRunning lists what other live firstboot processes have in the lab:
// running or paused domains not created by this Lab whose owner is not known
// to have ended, and networks whose recorded owner still runs (a run between
// network and machine, or in its KVM probe).
func (l *Lab) othersRunning(ctx context.Context) []string {
	objs, err := l.labObjects(ctx)
	if err != nil {
		return nil
	}
	active, _, err := call2(ctx, "list domains", func() ([]golibvirt.Domain, uint32, error) {
		return l.conn.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive)
	})
	if err != nil {
		return nil
	}
	running := map[string]bool{}
	for _, d := range active {
		running[d.Name] = true
	}
	var others []string
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range objs {
		// A machine with no recorded owner counts as another's (as it always
		// did); a network needs a live recorded owner (older versions
		// recorded none, and would keep the daemons up for ever).
		if l.owned[o.name] || orphaned(o) {
			continue
		}
		if o.kind == "machine" && running[o.name] || o.kind == "network" && o.known {
			others = append(others, o.name)
		}
	}
	return others
}
