package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/internal/owner"
	"github.com/firstboot/firstboot/lab"
)

// Machine is a libvirt domain; it implements lab.Machine.
type Machine struct {
	lab        *Lab
	dom        golibvirt.Domain
	net        *Network
	name       string
	mac        net.HardwareAddr
	accel      string
	consoleLog string
	overlay    string
	video      string
	runDir     string

	// sizeMu guards the screen size of the last screenshot, which scales
	// pointer positions.
	sizeMu sync.Mutex
	size   image.Point
	sizeAt time.Time

	// mediaMu guards media: each media drive and whether it holds its image.
	mediaMu sync.Mutex
	media   map[string]*mediaState

	stopped  chan struct{}
	stopOnce sync.Once

	destroyOnce sync.Once
	destroyErr  error
}

var _ lab.Machine = (*Machine)(nil)

func (m *Machine) Name() string          { return m.name }
func (m *Machine) MAC() net.HardwareAddr { return m.mac }
func (m *Machine) Accel() string         { return m.accel }
func (m *Machine) ConsoleLog() string    { return m.consoleLog }
func (m *Machine) Stopped() <-chan struct{} {
	return m.stopped
}

func (m *Machine) markStopped() { m.stopOnce.Do(func() { close(m.stopped) }) }

// DeriveMAC gives a locally administered QEMU-range MAC that is stable for a
// run directory and machine name.
func DeriveMAC(runDir, name string) net.HardwareAddr {
	h := sha256.Sum256([]byte(runDir + "\x00" + name))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}
}

// normalize fills defaults and checks the spec.
func normalize(spec lab.MachineSpec) (lab.MachineSpec, error) {
	if spec.Name == "" {
		return spec, errors.New("machine: name is required")
	}
	spec.Name = withPrefix(spec.Name)
	if spec.RunDir == "" {
		return spec, fmt.Errorf("machine %s: RunDir is required (the overlay and console log go there)", spec.Name)
	}
	if spec.CPUs == 0 {
		spec.CPUs = 1
	}
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 512
	}
	if spec.Firmware == "" {
		spec.Firmware = "bios"
	}
	if spec.Firmware != "bios" && spec.Firmware != "uefi" {
		return spec, fmt.Errorf("machine %s: firmware %q: want bios or uefi", spec.Name, spec.Firmware)
	}
	if spec.NICModel == "" {
		spec.NICModel = "virtio"
	}
	if spec.MAC == "" {
		spec.MAC = DeriveMAC(spec.RunDir, spec.Name).String()
	} else if _, err := net.ParseMAC(spec.MAC); err != nil {
		return spec, fmt.Errorf("machine %s: MAC: %w", spec.Name, err)
	}
	if spec.ConsoleLog == "" {
		spec.ConsoleLog = filepath.Join(spec.RunDir, "console.log")
	}
	var err error
	for _, p := range []*string{&spec.Kernel, &spec.Initrd, &spec.Disk, &spec.ISO, &spec.ConsoleLog, &spec.RunDir} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return spec, err
			}
		}
	}
	sources := 0
	for _, s := range []string{spec.Kernel, spec.Disk, spec.ISO} {
		if s != "" {
			sources++
		}
	}
	if sources == 0 || (spec.Kernel != "" && spec.ISO != "") {
		return spec, fmt.Errorf("machine %s: want a Kernel (optionally with a Disk), a Disk, or an ISO (optionally with a Disk)", spec.Name)
	}
	for _, f := range []string{spec.Kernel, spec.Initrd, spec.Disk, spec.ISO} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return spec, fmt.Errorf("machine %s: %w", spec.Name, err)
		}
	}
	if spec, err = normalizeHardware(spec); err != nil {
		return spec, err
	}
	if spec.Firmware == "uefi" && !ovmfInstalled() {
		return spec, fmt.Errorf("machine %s: UEFI firmware needs the ovmf package (apt-get install ovmf)", spec.Name)
	}
	return spec, nil
}

func ovmfInstalled() bool {
	// Firmware descriptors libvirt selects from (Debian's ovmf ships
	// *-edk2-x86_64*.json; other distributions name them after OVMF).
	for _, pattern := range []string{"*edk2-x86_64*.json", "*ovmf*.json"} {
		if m, _ := filepath.Glob(filepath.Join("/usr/share/qemu/firmware", pattern)); len(m) > 0 {
			return true
		}
	}
	return false
}

// DomainXML builds the domain definition. accel is "kvm" or "tcg"; overlay
// is the disk the machine writes to (the qcow2 over spec.Disk).
func DomainXML(spec lab.MachineSpec, network, accel, overlay string) (string, error) {
	d, err := domainDef(spec, network, accel, overlay)
	if err != nil {
		return "", err
	}
	return d.Marshal()
}

// domainDef is DomainXML before marshalling, for callers that add to it.
func domainDef(spec lab.MachineSpec, network, accel, overlay string) (*libvirtxml.Domain, error) {
	typ := "qemu"
	if accel == "kvm" {
		typ = "kvm"
	}
	machine := machineType(spec)
	port0 := uint(0)
	d := libvirtxml.Domain{
		Type:        typ,
		Name:        spec.Name,
		Description: spec.Description,
		Memory:      &libvirtxml.DomainMemory{Value: uint(spec.MemoryMiB), Unit: "MiB"},
		VCPU:        &libvirtxml.DomainVCPU{Value: uint(spec.CPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: "x86_64", Machine: machine, Type: "hvm"},
			Kernel:  spec.Kernel,
			Initrd:  spec.Initrd,
			Cmdline: spec.Cmdline,
		},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		// QEMU runs as root whatever qemu.conf says, and libvirt leaves file
		// ownership alone: images may live anywhere (the cache, a run dir).
		SecLabel: []libvirtxml.DomainSecLabel{{Type: "static", Model: "dac", Relabel: "no", Label: "+0:+0"}},
		Devices: &libvirtxml.DomainDeviceList{
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port0},
				Log:    &libvirtxml.DomainChardevLog{File: spec.ConsoleLog, Append: "off"},
			}},
			Consoles: []libvirtxml.DomainConsole{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port0},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if spec.Firmware == "uefi" {
		d.OS.Firmware = "efi"
	}
	if network != "" {
		d.Devices.Interfaces = []libvirtxml.DomainInterface{{
			Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: network}},
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: spec.MAC},
			Model:  &libvirtxml.DomainInterfaceModel{Type: spec.NICModel},
		}}
	}
	drvs, err := drives(spec, overlay)
	if err != nil {
		return nil, err
	}
	// A video device is what QEMU's screendump captures; no VNC needed.
	addHardware(&d, spec, accel, drvs)
	if spec.Display {
		// VNC on a socket libvirt names in its per-domain directory: no port
		// to pick or clash, and nothing reachable from the network.
		d.Devices.Graphics = append(d.Devices.Graphics, libvirtxml.DomainGraphic{VNC: &libvirtxml.DomainGraphicVNC{
			Listeners: []libvirtxml.DomainGraphicListener{{Socket: &libvirtxml.DomainGraphicListenerSocket{}}},
		}})
	}
	if spec.ISO != "" {
		d.OS.BootDevices = append(d.OS.BootDevices, libvirtxml.DomainBootDevice{Dev: "cdrom"})
	}
	if overlay != "" || slices.ContainsFunc(spec.Media, func(m lab.Media) bool { return m.Kind == lab.MediaDisk }) {
		d.OS.BootDevices = append(d.OS.BootDevices, libvirtxml.DomainBootDevice{Dev: "hd"})
	}
	return &d, nil
}

// createOverlay makes a qcow2 copy-on-write overlay over base so the base
// image is never written.
func createOverlay(ctx context.Context, base, overlay string) error {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", base).Output()
	if err != nil {
		return fmt.Errorf("qemu-img info %s: %w (is qemu-utils installed?)", base, err)
	}
	var info struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Format == "" {
		return fmt.Errorf("qemu-img info %s: cannot read the image format", base)
	}
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", info.Format, "-b", base, overlay).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create overlay %s: %w: %s", overlay, err, out)
	}
	return nil
}

// DefineMachine defines the machine on net and starts it paused: arm the
// capture on its tap, then Resume, and the first packet is kept.
//
// The machine lives only as long as this process's connection to libvirtd
// (it is started with VIR_DOMAIN_START_AUTODESTROY): a killed firstboot
// leaves no QEMU running. Its definition records the owner and its overlay
// files, so the next firstboot removes what a killed one left (see Reap).
func (l *Lab) DefineMachine(ctx context.Context, spec lab.MachineSpec, network *Network) (_ *Machine, err error) {
	spec, err = normalize(spec)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(spec.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("machine %s: %w", spec.Name, err)
	}
	if spec.Accel == "" {
		spec.Accel = l.cfg.Accel
	}
	accel, err := l.resolveAccel(ctx, spec)
	if err != nil {
		return nil, err
	}
	// Older firstboot versions sharing the lab read the owner from here.
	spec.Description = fmt.Sprintf("%s%d", ownerTag, os.Getpid())
	mac, _ := net.ParseMAC(spec.MAC)
	m := &Machine{lab: l, net: network, name: spec.Name, mac: mac, accel: accel, consoleLog: spec.ConsoleLog, stopped: make(chan struct{})}
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Destroy(ctx))
		}
	}()
	if spec.Disk != "" {
		m.overlay = filepath.Join(spec.RunDir, spec.Name+".qcow2")
	}
	if err := l.checkCaps(ctx, spec, accel); err != nil {
		return nil, err
	}
	drvs, err := drives(spec, m.overlay)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", spec.Name, err)
	}
	m.video, m.runDir = spec.Video, spec.RunDir
	m.media = map[string]*mediaState{}
	for _, d := range drvs {
		if d.media != nil {
			m.media[d.media.Name] = &mediaState{drive: d, inserted: !d.media.Ejected}
		}
	}
	netName := ""
	if network != nil {
		netName = network.Name()
	}
	def, err := domainDef(spec, netName, accel, m.overlay)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", spec.Name, err)
	}
	def.Metadata = &libvirtxml.DomainMetadata{XML: metadataXML(owner.Self(), m.overlays())}
	x, err := def.Marshal()
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", spec.Name, err)
	}
	l.mu.Lock()
	if _, dup := l.machines[spec.Name]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("machine %s: already defined in this lab", spec.Name)
	}
	// Registered before it starts so no lifecycle event is missed.
	l.machines[spec.Name] = m
	l.mu.Unlock()
	l.own(spec.Name)
	t0 := time.Now()
	// Defined before its overlays exist (libvirt checks files only at
	// start): a firstboot killed from here on leaves a definition that
	// names them, and whoever reaps it removes them too.
	if m.dom, err = call(ctx, "define "+spec.Name, func() (golibvirt.Domain, error) { return l.conn.DomainDefineXML(x) }); err != nil {
		return nil, fmt.Errorf("machine %s: %w", spec.Name, err)
	}
	if m.overlay != "" {
		if err := createOverlay(ctx, spec.Disk, m.overlay); err != nil {
			return nil, err
		}
	}
	for _, d := range drvs {
		if d.media != nil && d.overlay != "" {
			if err := createOverlay(ctx, d.media.Path, d.overlay); err != nil {
				return nil, fmt.Errorf("machine %s: media %q: %w", spec.Name, d.media.Name, err)
			}
		}
	}
	if _, err := call(ctx, "start paused "+spec.Name, func() (golibvirt.Domain, error) {
		return l.conn.DomainCreateWithFlags(m.dom, uint32(golibvirt.DomainStartPaused|golibvirt.DomainStartAutodestroy))
	}); err != nil {
		return nil, fmt.Errorf("machine %s: %w (see /var/log/libvirt/qemu/%s.log)", spec.Name, err, spec.Name)
	}
	l.log.Info("lab: machine defined (paused)", "name", spec.Name, "accel", accel, "mac", spec.MAC, "took", time.Since(t0).Round(time.Millisecond))
	return m, nil
}

// Resume starts the paused machine's CPUs.
func (m *Machine) Resume(ctx context.Context) error {
	return call0(ctx, "resume "+m.name, func() error { return m.lab.conn.DomainResume(m.dom) })
}

func (m *Machine) state(ctx context.Context) (golibvirt.DomainState, error) {
	s, _, err := call2(ctx, "state "+m.name, func() (int32, int32, error) { return m.lab.conn.DomainGetState(m.dom, 0) })
	return golibvirt.DomainState(s), err
}

// Shutdown presses the ACPI power button and waits up to timeout for the
// guest to power off; then it pulls the plug. The domain stays defined.
func (m *Machine) Shutdown(ctx context.Context, timeout time.Duration) error {
	if err := call0(ctx, "shutdown "+m.name, func() error {
		return m.lab.conn.DomainShutdownFlags(m.dom, golibvirt.DomainShutdownAcpiPowerBtn)
	}); err != nil && !isNotRunning(err) {
		return err
	}
	wait := time.NewTimer(timeout)
	defer wait.Stop()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.stopped:
			return nil
		case <-tick.C:
			// Events can be late or lost with the connection; ask too.
			if s, err := m.state(ctx); err == nil && s == golibvirt.DomainShutoff {
				m.markStopped()
				return nil
			}
		case <-wait.C:
			m.lab.log.Warn("lab: guest ignored ACPI shutdown; destroying", "name", m.name, "after", timeout)
			err := call0(ctx, "destroy "+m.name, func() error { return m.lab.conn.DomainDestroy(m.dom) })
			if err != nil && !isNotRunning(err) {
				return err
			}
			m.markStopped()
			return nil
		case <-ctx.Done():
			return fmt.Errorf("shutdown %s: %w", m.name, ctx.Err())
		}
	}
}

// Destroy powers the machine off, removes its overlays and undefines it.
// It is idempotent and uses its own bounded context.
func (m *Machine) Destroy(ctx context.Context) error {
	m.destroyOnce.Do(func() {
		ctx, cancel := teardownContext(ctx)
		defer cancel()
		var errs []error
		// Files go before the definition: a firstboot killed in between
		// leaves a definition that names them, for the next one to reap.
		removeFiles := func() {
			for _, o := range m.overlays() {
				if err := os.Remove(o); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
		if m.dom.Name != "" {
			if err := m.lab.removeDomain(ctx, m.dom, removeFiles); err != nil {
				errs = append(errs, err)
				// Without libvirtd (it died, or the connection is gone) the
				// QEMU process would outlive the run: kill it directly.
				select {
				case <-m.lab.Disconnected():
					if kerr := killQEMU(m.name); kerr != nil {
						errs = append(errs, kerr)
					}
				default:
				}
			}
		}
		m.markStopped()
		removeFiles()
		m.lab.mu.Lock()
		if m.lab.machines[m.name] == m {
			delete(m.lab.machines, m.name)
		}
		m.lab.mu.Unlock()
		m.destroyErr = errors.Join(errs...)
	})
	return m.destroyErr
}

// killQEMU kills a domain's QEMU process by the pid file libvirt keeps for it.
func killQEMU(name string) error {
	data, err := os.ReadFile(filepath.Join("/run/libvirt/qemu", name+".pid"))
	if err != nil {
		return fmt.Errorf("kill QEMU of %s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("kill QEMU of %s: bad pid file", name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill QEMU of %s (pid %d): %w", name, pid, err)
	}
	return nil
}

// Reboot asks the guest to reboot (ACPI).
func (m *Machine) Reboot(ctx context.Context) error {
	return call0(ctx, "reboot "+m.name, func() error {
		return m.lab.conn.DomainReboot(m.dom, golibvirt.DomainRebootAcpiPowerBtn)
	})
}

// Reset is the reset button: no guest cooperation.
func (m *Machine) Reset(ctx context.Context) error {
	return call0(ctx, "reset "+m.name, func() error { return m.lab.conn.DomainReset(m.dom, 0) })
}

// SendKeys presses the Linux input keycodes together for holdMs.
func (m *Machine) SendKeys(ctx context.Context, keycodes []uint, holdMs uint) error {
	codes := make([]uint32, len(keycodes))
	for i, k := range keycodes {
		codes[i] = uint32(k)
	}
	return call0(ctx, "send keys to "+m.name, func() error {
		return m.lab.conn.DomainSendKey(m.dom, uint32(golibvirt.KeycodeSetLinux), uint32(holdMs), codes, 0)
	})
}

// Screenshot writes the screen as PNG through QEMU's screendump (libvirt's
// screenshot stream is unreliable). QEMU writes the file itself.
func (m *Machine) Screenshot(ctx context.Context, path string) error {
	if m.video == "none" {
		return fmt.Errorf("screenshot of %s: the machine has no screen (video: none)", m.name)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	_ = os.Remove(abs)
	cmd, _ := json.Marshal(map[string]any{
		"execute":   "screendump",
		"arguments": map[string]string{"filename": abs, "format": "png"},
	})
	if err := m.qmp(ctx, "screendump", string(cmd)); err != nil {
		return err
	}
	if fi, err := os.Stat(abs); err != nil || fi.Size() == 0 {
		return fmt.Errorf("screendump %s: no image written to %s", m.name, abs)
	}
	return m.noteScreenSize(abs)
}

func (m *Machine) liveXML(ctx context.Context) (libvirtxml.Domain, error) {
	var d libvirtxml.Domain
	x, err := call(ctx, "XML of "+m.name, func() (string, error) { return m.lab.conn.DomainGetXMLDesc(m.dom, 0) })
	if err != nil {
		return d, err
	}
	if err := d.Unmarshal(x); err != nil {
		return d, fmt.Errorf("%s: live XML: %w", m.name, err)
	}
	return d, nil
}

// DisplaySocket is the unix socket of the machine's VNC server (a machine
// defined with Display), read from the live XML.
func (m *Machine) DisplaySocket(ctx context.Context) (string, error) {
	d, err := m.liveXML(ctx)
	if err != nil {
		return "", err
	}
	if d.Devices != nil {
		for _, g := range d.Devices.Graphics {
			if g.VNC == nil {
				continue
			}
			if g.VNC.Socket != "" {
				return g.VNC.Socket, nil
			}
			for _, l := range g.VNC.Listeners {
				if l.Socket != nil && l.Socket.Socket != "" {
					return l.Socket.Socket, nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s: no VNC socket in the live XML (was it defined with Display?)", m.name)
}

// TapName reads the NIC's host-side device (vnetN) from the live XML.
func (m *Machine) TapName(ctx context.Context) (string, error) {
	d, err := m.liveXML(ctx)
	if err != nil {
		return "", err
	}
	if d.Devices != nil {
		for _, i := range d.Devices.Interfaces {
			if i.Target != nil && i.Target.Dev != "" {
				return i.Target.Dev, nil
			}
		}
	}
	return "", fmt.Errorf("%s: no tap in the live XML (is the machine running and attached to a network?)", m.name)
}

// Console opens the serial console's pty (QEMU keeps it in raw mode) for
// reading and writing. Output is also logged to ConsoleLog.
func (m *Machine) Console(ctx context.Context) (io.ReadWriteCloser, error) {
	d, err := m.liveXML(ctx)
	if err != nil {
		return nil, err
	}
	if d.Devices != nil {
		for _, s := range d.Devices.Serials {
			if s.Source != nil && s.Source.Pty != nil && s.Source.Pty.Path != "" {
				f, err := os.OpenFile(s.Source.Pty.Path, os.O_RDWR|unix.O_NOCTTY, 0)
				if err != nil {
					return nil, fmt.Errorf("console of %s: %w", m.name, err)
				}
				return f, nil
			}
		}
	}
	return nil, fmt.Errorf("console of %s: no serial pty in the live XML", m.name)
}

// IP waits for the machine's DHCP lease on its network.
func (m *Machine) IP(ctx context.Context) (netip.Addr, error) {
	if m.net == nil {
		return netip.Addr{}, fmt.Errorf("%s: no network", m.name)
	}
	for {
		leases, _, err := call2(ctx, "DHCP leases", func() ([]golibvirt.NetworkDhcpLease, uint32, error) {
			return m.lab.conn.NetworkGetDhcpLeases(m.net.net, golibvirt.OptString{m.mac.String()}, 1, 0)
		})
		if err != nil {
			return netip.Addr{}, err
		}
		for _, le := range leases {
			if a, err := netip.ParseAddr(le.Ipaddr); err == nil {
				return a, nil
			}
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("%s: no DHCP lease: %w", m.name, ctx.Err())
		case <-m.stopped:
			return netip.Addr{}, fmt.Errorf("%s: stopped before it got a DHCP lease", m.name)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
