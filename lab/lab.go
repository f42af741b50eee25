// Package lab holds the lab's types: what a network and a machine look like
// (specs) and what a running one offers (interfaces). lab/libvirt implements
// them with libvirtd and QEMU; scenarios depend only on this package.
package lab

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// Config says how to reach or start the hypervisor.
type Config struct {
	// StateDir holds pid files and the lab state (default /var/lib/firstboot).
	StateDir string
	// LibvirtURI selects an existing libvirtd ("qemu:///system" or
	// "qemu:///system?socket=/path"); empty means start our own inside Netns.
	LibvirtURI string
	// Netns is the namespace the daemons run in (default "firstboot").
	Netns string
	// Accel is the default accelerator: "auto", "kvm" or "tcg".
	Accel string
	// Keep leaves the daemons Up starts running after this process (`firstboot
	// lab up`); otherwise they belong to this process, and the next firstboot
	// adopts and tears them down if it dies without doing so itself.
	Keep bool
	// ProbeKernel is a stock kernel (the test guest's) booted briefly under
	// KVM to decide "auto"; without it a direct-boot machine's own kernel is
	// used, and otherwise "auto" means TCG.
	ProbeKernel string
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// NetworkMode says where a lab network's packets go.
type NetworkMode string

const (
	// Simulated is an isolated network: no forwarding anywhere, the bridge
	// address is the guest's router and DNS server (the responders listen there).
	Simulated NetworkMode = "simulated"
	// Bridged puts guests on an existing host bridge with a real uplink: they
	// get their addresses from the upstream network's DHCP. Tests run it only
	// against a simulated uplink (lab/uplink).
	Bridged NetworkMode = "bridged"
	// Routed gives guests the lab's DHCP and DNS (forwarded) and NATs the rest
	// through a veth into the namespace firstboot runs in, out of its default
	// route (lab/uplink). No host bridge needed.
	Routed NetworkMode = "routed"
)

// NetworkSpec describes a lab network.
type NetworkSpec struct {
	// Name is prefixed with "firstboot-" when it does not start with it.
	Name string
	// Subnet is an IPv4 /24 (or larger); zero picks a free 10.77.N.0/24.
	Subnet netip.Prefix
	// Mode is Simulated (default), Routed or Bridged.
	Mode NetworkMode
	// Bridge is the existing host bridge for Bridged mode.
	Bridge string
	// Avoid lists subnets in use outside libvirt (the routes of the namespace
	// a routed network's veth leads into) that a picked Subnet must not overlap.
	Avoid []netip.Prefix
}

// Network is a started lab network.
type Network interface {
	Name() string
	// Bridge is the bridge interface in the lab namespace.
	Bridge() string
	// Addr is the bridge's address: the guests' gateway and DNS server.
	Addr() netip.Addr
	Subnet() netip.Prefix
	// Close destroys and undefines the network.
	Close(ctx context.Context) error
}

// MachineSpec describes a lab machine. Exactly one boot source is used:
// Kernel (direct kernel boot, with Initrd and Cmdline), Disk, or ISO (a Disk
// may accompany an ISO as the install target).
type MachineSpec struct {
	// Name is prefixed with "firstboot-" when it does not start with it.
	Name      string
	CPUs      int // default 1
	MemoryMiB int // default 512
	// Firmware is "bios" (default) or "uefi".
	Firmware string
	// Accel overrides the lab's accelerator: "auto", "kvm" or "tcg".
	Accel string

	Kernel, Initrd, Cmdline string
	// Disk is a base image; the machine runs on a qcow2 overlay in RunDir so
	// the base is never modified.
	Disk string
	// ISO is attached as a CD-ROM and booted first.
	ISO string

	// NICModel defaults to "virtio".
	NICModel string
	// DiskBus is the bus of the boot disk and of disk media: "virtio"
	// (default), "sata", "ide", "scsi" or "nvme"; a bus the hypervisor does
	// not offer for the machine type is refused when the machine is defined.
	DiskBus string
	// Video is the display adapter: "vga" (default), "virtio", "qxl" or
	// "none" (no screen: no screenshots).
	Video string
	// TPM adds an emulated TPM 2.0 (swtpm, started by libvirt). Boot a
	// bzImage with it, not a PVH vmlinux: with a TPM, QEMU 7.2's PVH loader
	// puts the initrd over the larger ACPI tables and the guest runs
	// without ACPI (no TPM, no power button).
	TPM bool
	// CPUModel is a named CPU model ("Penryn", "Skylake-Client"); empty is
	// the hypervisor's default. Features TCG cannot emulate are left out.
	CPUModel string
	// CPUFeatures adjust the model: "+name" requires a CPUID feature (libvirt's
	// name: "sse4.2", "invtsc"), "-name" removes it.
	CPUFeatures []string
	// AppleSMCOSK is the 64-character key of the Apple SMC device that macOS
	// checks; set, the machine gets QEMU's isa-applesmc. Never ship one.
	AppleSMCOSK string
	// Display gives the machine a VNC server on a unix socket private to the
	// host (libvirt picks the path; DisplaySocket reads it), for lab/vnc to
	// serve to a person. Needs a Video other than "none".
	Display bool
	// Media are extra drives, attached after the boot disk and ISO in order.
	Media []Media
	// MAC defaults to one derived from RunDir and Name (stable per run).
	MAC string
	// ConsoleLog receives the serial console (default RunDir/console.log).
	ConsoleLog string
	// RunDir holds the overlay and default console log; required.
	RunDir string
	// Description goes into the domain XML (firstboot sets it to the owning
	// process, so leftovers of a crashed run can be told apart).
	Description string
}

// Media kinds.
const (
	// MediaCDROM is a read-only CD/DVD drive; its tray can be emptied and
	// loaded while the machine runs.
	MediaCDROM = "cdrom"
	// MediaFloppy is a read-only floppy drive, changeable like a CD-ROM.
	MediaFloppy = "floppy"
	// MediaDisk is a hard disk on the machine's disk bus, written through a
	// qcow2 overlay (the image is never modified).
	MediaDisk = "disk"
	// MediaUSB is a USB stick, written through an overlay; it can be plugged
	// in and pulled while the machine runs.
	MediaUSB = "usb"
)

// BootISOMedia is the media name of the machine's ISO (MachineSpec.ISO):
// InsertMedia and EjectMedia take it like any CD-ROM, so an installer can be
// taken out once it is done.
const BootISOMedia = "image"

// Media is an extra drive of a machine.
type Media struct {
	// Name identifies the drive for InsertMedia and EjectMedia.
	Name string
	// Kind is MediaCDROM, MediaFloppy, MediaDisk or MediaUSB.
	Kind string
	// Path is the image the drive holds (or, when Ejected, gets on insert).
	Path string
	// Ejected starts the drive empty (CD-ROM, floppy) or unplugged (disk,
	// USB); InsertMedia loads Path later.
	Ejected bool
}

// ExecResult is what a program run by the guest agent left.
type ExecResult struct {
	// ExitCode is the program's exit status; Signal, when non-zero, is the
	// signal that ended it.
	ExitCode, Signal int
	Stdout, Stderr   []byte
	// Truncated says the agent cut the output (qemu-ga keeps at most 16 MiB).
	Truncated bool
}

// Versions are the hypervisor's versions, for the manifest.
type Versions struct {
	Libvirt string // e.g. "9.0.0"
	QEMU    string // e.g. "7.2.0"
}

// Machine is a defined lab machine.
type Machine interface {
	Name() string
	MAC() net.HardwareAddr
	// Accel is the accelerator really in use: "kvm" or "tcg".
	Accel() string
	// Resume starts a paused machine's CPUs.
	Resume(ctx context.Context) error
	// Shutdown asks the guest to power off (ACPI) and destroys it after timeout.
	Shutdown(ctx context.Context, timeout time.Duration) error
	// Destroy powers off, undefines and removes the overlay (idempotent).
	Destroy(ctx context.Context) error
	// Reboot asks the guest to reboot (ACPI); Reset is the reset button.
	Reboot(ctx context.Context) error
	Reset(ctx context.Context) error
	// SendKeys presses keycodes (Linux input codes) together for holdMs.
	SendKeys(ctx context.Context, keycodes []uint, holdMs uint) error
	// Screenshot writes the screen as PNG to path.
	Screenshot(ctx context.Context, path string) error
	// Pointer sends pointer events (absolute positions in screen pixels,
	// buttons, wheel) in order, through the machine's USB tablet.
	Pointer(ctx context.Context, events []PointerEvent) error
	// Console opens the serial console for reading and writing.
	Console(ctx context.Context) (io.ReadWriteCloser, error)
	// ConsoleLog is the file the serial console is logged to.
	ConsoleLog() string
	// TapName is the host side of the machine's NIC (vnetN).
	TapName(ctx context.Context) (string, error)
	// IP waits for the machine's DHCP lease.
	IP(ctx context.Context) (netip.Addr, error)
	// Stopped is closed when the machine stops (shutdown, crash, destroy).
	Stopped() <-chan struct{}
	// InsertMedia loads the named media's image into its drive (CD-ROM,
	// floppy) or plugs it in (disk, USB); EjectMedia empties or unplugs it.
	InsertMedia(ctx context.Context, name string) error
	EjectMedia(ctx context.Context, name string) error
	// GuestExec runs a program in the guest through qemu-guest-agent and
	// waits until it exits or ctx ends. A non-zero exit is not an error.
	GuestExec(ctx context.Context, path string, args []string) (ExecResult, error)
}
