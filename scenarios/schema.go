// Package scenarios defines firstboot's experiment files: what to boot, how the
// machine is driven step by step, and what the results must show. Files are YAML,
// parsed strictly: every mistake is reported with file, line and column.
package scenarios

import "time"

// Scenario is one experiment.
type Scenario struct {
	Name        string   `yaml:"name" required:"true" doc:"short identifier, used in run ids"`
	Description string   `yaml:"description"`
	OS          OS       `yaml:"os"`
	Image       Image    `yaml:"image" required:"true"`
	Machine     Machine  `yaml:"machine"`
	Network     Network  `yaml:"network"`
	Capture     Capture  `yaml:"capture"`
	FirstParty  []string `yaml:"first_party" doc:"the vendor's domains (apple.com, …): destinations under them are first party"`
	Steps       []Step   `yaml:"steps" required:"true"`
	Expect      []Expect `yaml:"expect"`

	// File is the path the scenario was loaded from; SHA256 is the file's hash.
	File   string `yaml:"-"`
	SHA256 string `yaml:"-"`
	// Source is the file's bytes (a run keeps them as scenario.yaml); Dir,
	// when set, is where relative paths start instead of File's folder.
	Source []byte `yaml:"-"`
	Dir    string `yaml:"-"`
}

// OS names the system under study.
type OS struct {
	Family  string `yaml:"family" enum:"linux,macos,windows,other"`
	Product string `yaml:"product"`
	Release string `yaml:"release"`
	Build   string `yaml:"build"`
}

// Image says what the machine boots.
type Image struct {
	// Builtin names an image firstboot builds itself ("testguest", "debian-12", …).
	Builtin string `yaml:"builtin" enum:",testguest,debian-12,debian-12-desktop,debian-13"`
	// Kind is disk (a bootable disk image), iso (an installer), or kernel (kernel+initrd).
	Kind    string  `yaml:"kind" enum:",disk,iso,kernel"`
	Path    string  `yaml:"path" doc:"file path, relative to the scenario file"`
	URL     string  `yaml:"url" doc:"where to get the image (firstboot image fetch)"`
	SHA256  string  `yaml:"sha256"`
	Kernel  string  `yaml:"kernel"`
	Initrd  string  `yaml:"initrd"`
	Cmdline string  `yaml:"cmdline"`
	Media   []Media `yaml:"media" doc:"extra media: unattend files, OpenCore disks, …"`
	// Obtain tells a researcher how to get the image when it is missing.
	Obtain string `yaml:"obtain"`
	// TrustLabCA makes a builtin image trust the lab CA (system store and
	// Firefox), so its HTTPS completes and the run's secrets decrypt it.
	TrustLabCA bool `yaml:"trust_lab_ca" doc:"builtin images: trust the lab CA so HTTPS is decrypted (docs/images.md: other images)"`
}

// Media is an extra drive attached to the machine, after the boot image, in
// the order written. CD-ROMs and floppies are read-only; disks and USB sticks
// are written through an overlay (the file is never modified).
type Media struct {
	Name   string `yaml:"name" required:"true" doc:"what insert and eject call it"`
	Kind   string `yaml:"kind" enum:"cdrom,disk,floppy,usb" required:"true"`
	Path   string `yaml:"path" required:"true" doc:"file path, relative to the scenario file"`
	SHA256 string `yaml:"sha256"`
	Obtain string `yaml:"obtain"`
	// Inserted false starts a CD-ROM or floppy drive empty (a disk or USB
	// stick unplugged): an insert action loads it later.
	Inserted *bool `yaml:"inserted" doc:"false: the drive starts empty; insert loads it (default true)"`
}

// StartsInserted says whether the media is in its drive at power-on.
func (m Media) StartsInserted() bool { return m.Inserted == nil || *m.Inserted }

// Machine is the virtual hardware.
type Machine struct {
	CPUs     int    `yaml:"cpus"`
	Memory   Size   `yaml:"memory" doc:"e.g. 512MiB, 4GiB"`
	Firmware string `yaml:"firmware" enum:",bios,uefi"`
	TPM      bool   `yaml:"tpm"`
	NIC      string `yaml:"nic" enum:",virtio,e1000,e1000e,rtl8139,vmxnet3"`
	DiskBus  string `yaml:"disk_bus" enum:",virtio,sata,ide,scsi,nvme"`
	CPUModel string `yaml:"cpu_model" doc:"a QEMU CPU model such as Penryn or Skylake-Client"`
	// CPUFeatures adjust the model's CPUID: +name adds, -name removes.
	CPUFeatures []string `yaml:"cpu_features" doc:"CPUID changes to the model, like +sse4.2 or -avx (libvirt's names)"`
	Video       string   `yaml:"video" enum:",vga,virtio,qxl,none"`
	// AppleSMCOSKFile holds the 64-character key of the Apple SMC that macOS
	// checks; set, the machine gets QEMU's isa-applesmc. firstboot ships none.
	AppleSMCOSKFile string `yaml:"apple_smc_osk_file" doc:"file with the Apple SMC's 64-character OSK, relative to the scenario file (macOS only)"`
}

// Network selects how the machine reaches "the internet".
type Network struct {
	// Mode simulated: firstboot's own responders answer everything (offline,
	// reproducible). routed and bridged: the real internet (lab/uplink).
	Mode   string `yaml:"mode" enum:",simulated,routed,bridged"`
	Bridge string `yaml:"bridge" doc:"host bridge for bridged mode (else firstboot.yaml's bridge or --bridge)"`
	Egress string `yaml:"egress" doc:"interface routed mode leaves by (default: the default route's)"`
	// InterceptTLS puts a TLS-intercepting proxy between the machine and
	// the real servers (routed mode; lab/intercept), so its HTTPS can be
	// read where it trusts the lab CA.
	InterceptTLS bool `yaml:"intercept_tls" doc:"routed mode: intercept TLS on port 443 with the lab CA (docs/images.md)"`
	// RefuseQUIC rejects the machine's UDP 443 while intercepting, so
	// clients fall back to TCP, where interception sees them.
	RefuseQUIC bool `yaml:"refuse_quic" doc:"with intercept_tls: reject UDP 443 (QUIC) so clients fall back to TLS over TCP"`
}

// Capture bounds the recording.
type Capture struct {
	// Window is the longest the capture runs; steps that are still running then fail.
	Window Duration `yaml:"window"`
}

// Step is one phase of the experiment (install, first boot, launch an app).
type Step struct {
	Name    string   `yaml:"name" required:"true"`
	Actions []Action `yaml:"actions" required:"true"`
}

// Expect is one regression expectation, checked on the analysis.
type Expect struct {
	Step         string   `yaml:"step" doc:"limit to one step; empty means the whole run"`
	Absent       []string `yaml:"absent" doc:"destination name patterns that must not appear (*.tencent.com)"`
	Present      []string `yaml:"present" doc:"destination name patterns that must appear"`
	MaxPlainHTTP *int     `yaml:"max_plain_http_hosts"`
	ThirdParty   []string `yaml:"third_party_allowed" doc:"the only third-party destinations allowed"`
	SYN          string   `yaml:"syn" doc:"the expected TCP SYN fingerprint line"`
	JA4          []string `yaml:"ja4" doc:"the JA4 fingerprints allowed"`
}

// Duration is a time.Duration written as Go writes durations ("90s", "1m30s").
type Duration time.Duration

// Size is a byte count written with a unit ("512MiB", "4GiB", "2G").
type Size int64
