package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/lab"
)

// mediaState is one media drive of a running machine.
type mediaState struct {
	drive    drive
	inserted bool
}

// overlays lists the qcow2 overlays the machine writes to.
func (m *Machine) overlays() []string {
	var out []string
	if m.overlay != "" {
		out = append(out, m.overlay)
	}
	m.mediaMu.Lock()
	defer m.mediaMu.Unlock()
	for _, st := range m.media {
		if st.drive.overlay != "" {
			out = append(out, st.drive.overlay)
		}
	}
	slices.Sort(out)
	return out
}

func (m *Machine) mediaNamed(name string) (*mediaState, error) {
	st := m.media[name]
	if st == nil {
		var names []string
		for n := range m.media {
			names = append(names, n)
		}
		slices.Sort(names)
		if len(names) == 0 {
			return nil, fmt.Errorf("%s: no media named %q: the machine has no media (add it to image.media)", m.name, name)
		}
		return nil, fmt.Errorf("%s: no media named %q (the machine has: %s)", m.name, name, strings.Join(names, ", "))
	}
	return st, nil
}

// InsertMedia loads the named media's image: a CD-ROM or floppy gets it in
// its drive (the tray closes on it), a disk or USB stick is plugged in.
func (m *Machine) InsertMedia(ctx context.Context, name string) error {
	return m.changeMedia(ctx, name, true)
}

// EjectMedia empties a CD-ROM or floppy drive (forced, like pulling the
// disc out: a guest that locked the tray does not stop it) or unplugs a
// disk or USB stick.
func (m *Machine) EjectMedia(ctx context.Context, name string) error {
	return m.changeMedia(ctx, name, false)
}

func (m *Machine) changeMedia(ctx context.Context, name string, insert bool) error {
	m.mediaMu.Lock()
	defer m.mediaMu.Unlock()
	st, err := m.mediaNamed(name)
	if err != nil {
		return err
	}
	d := st.drive
	what := fmt.Sprintf("eject media %q (%s) from %s", name, d.media.Kind, m.name)
	if insert {
		what = fmt.Sprintf("insert media %q (%s) into %s", name, d.media.Kind, m.name)
	}
	disk := d.disk
	switch {
	case d.hotplugged() && insert && st.inserted:
		return fmt.Errorf("%s: it is already plugged in (eject it first)", what)
	case d.hotplugged() && !insert && !st.inserted:
		return fmt.Errorf("%s: it is not plugged in", what)
	case !d.hotplugged() && insert && d.disk.Source == nil:
		return fmt.Errorf("%s: the media has no image path", what)
	case !d.hotplugged() && !insert:
		disk = d.emptied()
	}
	x, err := disk.Marshal()
	if err != nil {
		return err
	}
	err = call0(ctx, what, func() error {
		switch {
		case d.hotplugged() && insert:
			return m.lab.conn.DomainAttachDeviceFlags(m.dom, x, uint32(golibvirt.DomainAffectLive))
		case d.hotplugged():
			return m.lab.conn.DomainDetachDeviceFlags(m.dom, x, uint32(golibvirt.DomainAffectLive))
		case insert:
			return m.lab.conn.DomainUpdateDeviceFlags(m.dom, x, golibvirt.DomainDeviceModifyLive)
		default:
			return m.lab.conn.DomainUpdateDeviceFlags(m.dom, x, golibvirt.DomainDeviceModifyLive|golibvirt.DomainDeviceModifyForce)
		}
	})
	if err != nil && d.hotplugged() && insert {
		return fmt.Errorf("%w (a %s disk may not be hot-pluggable: USB and virtio/scsi disks are)", err, d.disk.Target.Bus)
	}
	if err != nil {
		return err
	}
	st.inserted = insert
	return nil
}

// checkCaps asks libvirt what this QEMU offers for the machine type and
// accelerator and refuses hardware it does not have, naming what it does.
func (l *Lab) checkCaps(ctx context.Context, spec lab.MachineSpec, accel string) error {
	virtType := "qemu"
	if accel == "kvm" {
		virtType = "kvm"
	}
	mt := machineType(spec)
	caps, err := l.domainCaps(ctx, virtType, mt)
	if err != nil {
		return fmt.Errorf("machine %s: %w", spec.Name, err)
	}
	var errs []error
	where := fmt.Sprintf("this libvirt and QEMU (%s, %s machine)", map[string]string{"qemu": "TCG", "kvm": "KVM"}[virtType], mt)
	enum := func(dev *libvirtxml.DomainCapsDevice, name string) []string {
		if dev == nil || dev.Supported != "yes" {
			return nil
		}
		for _, e := range dev.Enums {
			if e.Name == name {
				return e.Values
			}
		}
		return nil
	}
	dev := caps.Devices
	if dev == nil {
		dev = &libvirtxml.DomainCapsDevices{}
	}
	buses := enum(dev.Disk, "bus")
	needBus := func(bus, why string) {
		if !slices.Contains(buses, bus) {
			hint := ""
			if bus == "ide" && mt == "q35" {
				hint = "; the UEFI (q35) machine has no IDE: use sata"
			}
			errs = append(errs, fmt.Errorf("%s: %s has no %s disk bus (it offers %s)%s", why, where, bus, strings.Join(buses, ", "), hint))
		}
	}
	needBus(spec.DiskBus, "disk bus "+spec.DiskBus)
	for _, md := range spec.Media {
		switch md.Kind {
		case lab.MediaFloppy:
			needBus("fdc", "media "+md.Name+" (floppy)")
		case lab.MediaUSB:
			needBus("usb", "media "+md.Name+" (usb)")
		}
	}
	if videos := enum(dev.Video, "modelType"); !slices.Contains(videos, spec.Video) {
		errs = append(errs, fmt.Errorf("video %s: %s offers %s", spec.Video, where, strings.Join(videos, ", ")))
	}
	if spec.TPM {
		switch {
		case !slices.Contains(enum(dev.TPM, "backendModel"), "emulator"):
			errs = append(errs, fmt.Errorf("tpm: %s has no emulated TPM", where))
		case len(enum(dev.TPM, "backendVersion")) > 0 && !slices.Contains(enum(dev.TPM, "backendVersion"), "2.0"):
			errs = append(errs, fmt.Errorf("tpm: %s has no TPM 2.0 emulator", where))
		}
		// libvirt runs swtpm_setup (swtpm-tools, which also creates the tss
		// user swtpm runs as) once, then swtpm for the machine.
		for _, prog := range []string{"swtpm", "swtpm_setup"} {
			if _, err := exec.LookPath(prog); err != nil {
				errs = append(errs, fmt.Errorf("tpm: %s is not installed (apt-get install swtpm swtpm-tools, or run scripts/provision.sh)", prog))
			}
		}
	}
	if spec.CPUModel != "" {
		errs = append(errs, checkCPUModel(caps, spec.CPUModel, where, l))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("machine %s: %w", spec.Name, err)
	}
	return nil
}

// checkCPUModel refuses a model QEMU does not know; one the accelerator
// cannot run in full runs without the missing features (logged).
func checkCPUModel(caps libvirtxml.DomainCaps, model, where string, l *Lab) error {
	if caps.CPU == nil {
		return nil
	}
	for _, mode := range caps.CPU.Modes {
		if mode.Name != "custom" {
			continue
		}
		var names []string
		for _, cm := range mode.Models {
			if cm.Name == model {
				if cm.Usable == "no" {
					l.log.Warn("lab: this accelerator lacks some features of the CPU model; the machine runs without them", "cpu_model", model, "where", where)
				}
				return nil
			}
			names = append(names, cm.Name)
		}
		slices.Sort(names)
		return fmt.Errorf("cpu model %q: %s does not know it (it knows %s)", model, where, strings.Join(names, ", "))
	}
	return nil
}

// domainCaps fetches (once per virt type and machine) libvirt's domain
// capabilities.
func (l *Lab) domainCaps(ctx context.Context, virtType, machine string) (libvirtxml.DomainCaps, error) {
	key := virtType + "/" + machine
	l.mu.Lock()
	c, ok := l.caps[key]
	l.mu.Unlock()
	if ok {
		return c, nil
	}
	x, err := call(ctx, "domain capabilities "+key, func() (string, error) {
		return l.conn.ConnectGetDomainCapabilities(golibvirt.OptString{}, golibvirt.OptString{"x86_64"}, golibvirt.OptString{machine}, golibvirt.OptString{virtType}, 0)
	})
	if err != nil {
		return c, err
	}
	if err := c.Unmarshal(x); err != nil {
		return c, fmt.Errorf("domain capabilities %s: %w", key, err)
	}
	l.mu.Lock()
	if l.caps == nil {
		l.caps = map[string]libvirtxml.DomainCaps{}
	}
	l.caps[key] = c
	l.mu.Unlock()
	return c, nil
}
