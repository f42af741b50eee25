package libvirt

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/lab"
)

// Defaults and accepted values of the virtual hardware.
var (
	diskBuses   = []string{"virtio", "sata", "ide", "scsi", "nvme"}
	videoModels = []string{"vga", "virtio", "qxl", "none"}
	mediaKinds  = []string{lab.MediaCDROM, lab.MediaFloppy, lab.MediaDisk, lab.MediaUSB}
)

// GuestAgentChannel is the virtio-serial port qemu-guest-agent listens on.
const GuestAgentChannel = "org.qemu.guest_agent.0"

// cpuFeatureRE is a CPUID feature change in libvirt's naming.
var cpuFeatureRE = regexp.MustCompile(`^[+-][a-z0-9][a-z0-9._-]*$`)

// nameRE is a media name (usable in file names: their overlays) or a CPU
// model name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// normalizeHardware fills the hardware defaults and checks what can be
// checked without the hypervisor (which checkCaps asks at define time).
func normalizeHardware(spec lab.MachineSpec) (lab.MachineSpec, error) {
	if spec.DiskBus == "" {
		spec.DiskBus = "virtio"
	}
	if !slices.Contains(diskBuses, spec.DiskBus) {
		return spec, fmt.Errorf("machine %s: disk bus %q: want one of %s", spec.Name, spec.DiskBus, strings.Join(diskBuses, ", "))
	}
	if spec.Video == "" {
		spec.Video = "vga"
	}
	if !slices.Contains(videoModels, spec.Video) {
		return spec, fmt.Errorf("machine %s: video %q: want one of %s", spec.Name, spec.Video, strings.Join(videoModels, ", "))
	}
	if spec.Display && spec.Video == "none" {
		return spec, fmt.Errorf("machine %s: a display (VNC) needs a screen: video none has none", spec.Name)
	}
	if spec.CPUModel != "" && !nameRE.MatchString(spec.CPUModel) {
		return spec, fmt.Errorf("machine %s: CPU model %q is not a model name (like Penryn or Skylake-Client)", spec.Name, spec.CPUModel)
	}
	if len(spec.CPUFeatures) > 0 && spec.CPUModel == "" {
		return spec, fmt.Errorf("machine %s: CPU features need a CPU model to adjust", spec.Name)
	}
	for _, f := range spec.CPUFeatures {
		if !cpuFeatureRE.MatchString(f) {
			return spec, fmt.Errorf("machine %s: CPU feature %q: write +name to add it or -name to remove it (libvirt's names, like +sse4.2 or -hle)", spec.Name, f)
		}
	}
	if spec.AppleSMCOSK != "" {
		if err := checkOSK(spec.AppleSMCOSK); err != nil {
			return spec, fmt.Errorf("machine %s: %w", spec.Name, err)
		}
	}
	seen := map[string]bool{}
	floppies := 0
	media := make([]lab.Media, len(spec.Media))
	for i, m := range spec.Media {
		if !nameRE.MatchString(m.Name) {
			return spec, fmt.Errorf("machine %s: media %d: name %q: use letters, digits, '.', '_' and '-'", spec.Name, i+1, m.Name)
		}
		if m.Name == lab.BootISOMedia {
			return spec, fmt.Errorf("machine %s: media %d: the name %q is the boot ISO's", spec.Name, i+1, m.Name)
		}
		if seen[m.Name] {
			return spec, fmt.Errorf("machine %s: media %q is named twice", spec.Name, m.Name)
		}
		seen[m.Name] = true
		if !slices.Contains(mediaKinds, m.Kind) {
			return spec, fmt.Errorf("machine %s: media %q: kind %q: want one of %s", spec.Name, m.Name, m.Kind, strings.Join(mediaKinds, ", "))
		}
		if m.Kind == lab.MediaFloppy {
			if floppies++; floppies > 2 {
				return spec, fmt.Errorf("machine %s: media %q: a PC has two floppy drives at most", spec.Name, m.Name)
			}
		}
		if m.Path == "" {
			if !m.Ejected || (m.Kind != lab.MediaCDROM && m.Kind != lab.MediaFloppy) {
				return spec, fmt.Errorf("machine %s: media %q: no image path (only an ejected CD-ROM or floppy drive may start without one)", spec.Name, m.Name)
			}
		} else {
			abs, err := filepath.Abs(m.Path)
			if err != nil {
				return spec, err
			}
			if _, err := os.Stat(abs); err != nil {
				return spec, fmt.Errorf("machine %s: media %q: %w", spec.Name, m.Name, err)
			}
			m.Path = abs
		}
		media[i] = m
	}
	spec.Media = media
	return spec, nil
}

// checkOSK accepts what QEMU's isa-applesmc takes as osk: 64 printable
// ASCII characters.
func checkOSK(osk string) error {
	if len(osk) != 64 {
		return fmt.Errorf("Apple SMC key: %d characters, want 64 (the OSK string, without a newline)", len(osk))
	}
	for i := 0; i < len(osk); i++ {
		if osk[i] < 0x20 || osk[i] > 0x7e {
			return fmt.Errorf("Apple SMC key: character %d is not printable ASCII", i+1)
		}
	}
	return nil
}

// drive is one disk device of the domain.
type drive struct {
	// media is the media entry it holds (lab.BootISOMedia for the boot ISO);
	// nil for the boot disk.
	media *lab.Media
	// disk is the device with its image; the domain starts with it unless
	// the media starts ejected.
	disk libvirtxml.DomainDisk
	// overlay is the qcow2 the drive writes to (disk and USB media).
	overlay string
}

// hotplugged says whether the drive is plugged in and out as a whole (disk,
// USB) rather than having its medium changed (CD-ROM, floppy).
func (d drive) hotplugged() bool {
	return d.media != nil && (d.media.Kind == lab.MediaDisk || d.media.Kind == lab.MediaUSB)
}

// emptied is the device with its medium removed (tray open, no source).
func (d drive) emptied() libvirtxml.DomainDisk {
	e := d.disk
	e.Source = nil
	return e
}

// mediaOverlay is where a writable media's copy-on-write overlay lives.
func mediaOverlay(spec lab.MachineSpec, m lab.Media) string {
	return filepath.Join(spec.RunDir, spec.Name+"-media-"+m.Name+".qcow2")
}

// targetAllocator hands out target device names per prefix (vda, vdb, sda,
// hda, fda…) in the order drives are added, so names never clash and are
// the same for the same spec.
type targetAllocator map[string]int

func (a targetAllocator) next(prefix string, limit int) (string, error) {
	i := a[prefix]
	if limit > 0 && i >= limit {
		return "", fmt.Errorf("too many %s drives (at most %d)", prefix, limit)
	}
	a[prefix] = i + 1
	return prefix + driveLetters(i), nil
}

// driveLetters is libvirt's disk index naming: a…z, aa…zz, aaa….
func driveLetters(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('a'+(i-1)%26)) + s
	}
	return s
}

// busPrefix is the target prefix libvirt expects for a bus.
func busPrefix(bus string) (prefix string, limit int) {
	switch bus {
	case "virtio":
		return "vd", 0
	case "ide":
		return "hd", 4
	case "fdc":
		return "fd", 2
	default: // sata, scsi, usb share sd; libvirt derives addresses from the index
		return "sd", 0
	}
}

// drives lays out the machine's disk devices: the boot ISO, the boot disk
// (its overlay), then the media in the spec's order.
func drives(spec lab.MachineSpec, overlay string) ([]drive, error) {
	bus := spec.DiskBus
	if bus == "" {
		bus = "virtio"
	}
	// CD-ROMs go on SATA (AHCI exists on both machine types), or on IDE next
	// to IDE disks for systems that know nothing newer.
	cdBus := "sata"
	if bus == "ide" {
		cdBus = "ide"
	}
	alloc := targetAllocator{}
	target := func(b string) (*libvirtxml.DomainDiskTarget, error) {
		p, limit := busPrefix(b)
		dev, err := alloc.next(p, limit)
		if err != nil {
			return nil, err
		}
		return &libvirtxml.DomainDiskTarget{Dev: dev, Bus: b}, nil
	}
	fileSource := func(p string) *libvirtxml.DomainDiskSource {
		return &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: p}}
	}
	var out []drive
	if spec.ISO != "" {
		t, err := target(cdBus)
		if err != nil {
			return nil, err
		}
		out = append(out, drive{
			media: &lab.Media{Name: lab.BootISOMedia, Kind: lab.MediaCDROM, Path: spec.ISO},
			disk: libvirtxml.DomainDisk{
				Device: "cdrom", Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
				Source: fileSource(spec.ISO), Target: t, ReadOnly: &libvirtxml.DomainDiskReadOnly{},
			}})
	}
	if overlay != "" {
		t, err := target(bus)
		if err != nil {
			return nil, err
		}
		out = append(out, drive{overlay: overlay, disk: libvirtxml.DomainDisk{
			Device: "disk", Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
			Source: fileSource(overlay), Target: t,
		}})
	}
	for i := range spec.Media {
		m := &spec.Media[i]
		var d drive
		var err error
		switch m.Kind {
		case lab.MediaCDROM, lab.MediaFloppy:
			b, dev := cdBus, "cdrom"
			if m.Kind == lab.MediaFloppy {
				b, dev = "fdc", "floppy"
			}
			d.disk = libvirtxml.DomainDisk{Device: dev, Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"}, ReadOnly: &libvirtxml.DomainDiskReadOnly{}}
			d.disk.Target, err = target(b)
			if m.Path != "" {
				d.disk.Source = fileSource(m.Path)
			}
		case lab.MediaDisk, lab.MediaUSB:
			b := bus
			if m.Kind == lab.MediaUSB {
				b = "usb"
			}
			d.overlay = mediaOverlay(spec, *m)
			d.disk = libvirtxml.DomainDisk{Device: "disk", Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"}, Source: fileSource(d.overlay)}
			d.disk.Target, err = target(b)
			if m.Kind == lab.MediaUSB {
				d.disk.Target.Removable = "on"
			}
		}
		if err != nil {
			return nil, fmt.Errorf("media %q: %w", m.Name, err)
		}
		d.media = m
		out = append(out, d)
	}
	return out, nil
}

// addHardware puts the drives and the machine's other devices into d.
func addHardware(d *libvirtxml.Domain, spec lab.MachineSpec, accel string, drvs []drive) {
	for _, dr := range drvs {
		switch {
		case dr.media == nil || !dr.media.Ejected:
			d.Devices.Disks = append(d.Devices.Disks, dr.disk)
		case !dr.hotplugged():
			d.Devices.Disks = append(d.Devices.Disks, dr.emptied())
		}
	}
	if spec.DiskBus == "scsi" {
		// virtio-scsi: the controller every guest with virtio drivers knows
		// (libvirt's default for x86 is the LSI one, which new kernels lack).
		d.Devices.Controllers = append(d.Devices.Controllers, libvirtxml.DomainController{Type: "scsi", Model: "virtio-scsi"})
	}
	video := spec.Video
	if video == "" {
		video = "vga"
	}
	d.Devices.Videos = []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: video}}}
	if video != "none" {
		// A USB tablet takes absolute positions, so a click lands where the
		// screenshot shows the text (a PS/2 mouse moves only relatively).
		d.Devices.Inputs = append(d.Devices.Inputs, libvirtxml.DomainInput{Type: "tablet", Bus: "usb"})
	}
	if spec.TPM {
		// TIS is the ISA interface of the i440fx machine; q35 gets the CRB
		// interface Windows 11 and current firmware expect.
		model := "tpm-tis"
		if machineType(spec) == "q35" {
			model = "tpm-crb"
		}
		d.Devices.TPMs = []libvirtxml.DomainTPM{{Model: model, Backend: &libvirtxml.DomainTPMBackend{
			Emulator: &libvirtxml.DomainTPMBackendEmulator{Version: "2.0"},
		}}}
	}
	if spec.CPUModel != "" {
		// check='none' and fallback='allow': QEMU runs the model with the
		// features the accelerator has (TCG lacks some of every newer model)
		// instead of libvirt refusing it.
		d.CPU = &libvirtxml.DomainCPU{Mode: "custom", Match: "exact", Check: "none",
			Model: &libvirtxml.DomainCPUModel{Value: spec.CPUModel, Fallback: "allow"}}
		for _, f := range spec.CPUFeatures {
			// Under TCG an added feature is optional: libvirt refuses what the
			// emulator lacks (invtsc) with require, and passes the rest.
			policy := "require"
			if accel != "kvm" {
				policy = "optional"
			}
			if f[0] == '-' {
				policy = "disable"
			}
			d.CPU.Features = append(d.CPU.Features, libvirtxml.DomainCPUFeature{Policy: policy, Name: f[1:]})
		}
	}
	if spec.AppleSMCOSK != "" {
		// libvirt has no element for the Apple SMC: pass QEMU the device.
		// QEMU's option syntax doubles commas inside a value.
		d.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{Args: []libvirtxml.DomainQEMUCommandlineArg{
			{Value: "-device"}, {Value: "isa-applesmc,osk=" + strings.ReplaceAll(spec.AppleSMCOSK, ",", ",,")},
		}}
	}
	// The guest agent's port; libvirt picks the host socket and connects.
	d.Devices.Channels = append(d.Devices.Channels, libvirtxml.DomainChannel{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: GuestAgentChannel}},
	})
}

// machineType is the QEMU machine: q35 for UEFI (Secure Boot, TPM CRB), the
// i440fx pc for BIOS.
func machineType(spec lab.MachineSpec) string {
	if spec.Firmware == "uefi" {
		return "q35"
	}
	return "pc"
}
