// Package guest builds the firstboot test guest: a tiny Linux system made
// only from Debian packages plus firstboot's own static agent, booted by
// direct kernel boot (kernel + initrd + command line, no disk). It behaves
// like an OS on its first boot, so the whole lab — network, responders,
// capture, analysis — can be exercised in seconds without a real installer.
//
// # Building
//
//	firstboot image build testguest [--agent PATH] [--force]
//
// or Build(ctx, BuildConfig{CacheDir, AgentPath, Logger}). Inputs:
//
//   - the kernel package linux-image-6.1.0-N-amd64, resolved from
//     `apt-cache depends linux-image-amd64` and fetched with `apt-get
//     download` (an `apt-get update` is run once if apt knows nothing);
//   - busybox-static (/bin/busybox and a symlink per applet);
//   - qemu-guest-agent (/usr/sbin/qemu-ga) and the packages of the shared
//     libraries it needs (GuestAgentPackages: libc6, libglib2.0-0, libnuma1,
//     libudev1, liburing2, libpcre2-8-0). Only qemu-ga's DT_NEEDED closure
//     goes in, as /lib/x86_64-linux-gnu/<soname>, with the loader linked at
//     its PT_INTERP path /lib64/ld-linux-x86-64.so.2 (Debian's loader
//     searches the multiarch directory without an ld.so.cache);
//   - the agent, cmd/firstboot-guest, built with CGO_ENABLED=0, installed as
//     /init.
//
// Downloads are checked against the SHA-256 in apt's index and kept in
// CacheDir/testguest/debs. The output, in CacheDir/testguest:
//
//	vmlinux        the uncompressed kernel, extracted in Go from Debian's
//	               bzImage (xz with the x86 BCJ filter); QEMU boots its PVH
//	               entry directly, which under TCG saves the in-guest
//	               decompression (several seconds)
//	vmlinuz        Debian's bzImage, for hypervisors that want it
//	initrd.img     gzip'd cpio "newc" archive written by this package
//	cmdline        the kernel command line (DefaultCmdline)
//	manifest.json  inputs (package names, versions, SHA-256s, agent hash,
//	               modules, command line), outputs (sizes, SHA-256s), the
//	               module load orders, qemu-ga's files with their packages
//	               and SHA-256s ("guest_agent") and the image SHA-256
//
// Build is idempotent: when the inputs are unchanged and the files still
// match their hashes, the cached image is returned untouched. The initrd is
// byte-for-byte reproducible (no timestamps in the archive or gzip header).
// Load(cacheDir) returns the built image without rebuilding; when there is
// none its error wraps ErrNotBuilt and says to run the build command.
//
// Image.Kernel is what to boot (vmlinux when extraction worked, else the
// bzImage), except on a machine with UEFI or a TPM: Image.KernelFor gives
// the bzImage then, because UEFI needs its EFI stub and QEMU's PVH boot with
// a TPM leaves the kernel without ACPI (no /dev/tpm0, no power button). Image.SHA256 identifies kernel +
// initrd + command line and belongs in a run's manifest.
//
// # Modules
//
// Debian builds virtio-net as modules and ships no modules.dep, so the
// builder reads "depends=" from each module's .modinfo section and orders
// the closure dependencies first. There are two lists. The boot list,
// /etc/firstboot-guest/modules, is the closure of DefaultModules (button,
// evdev, virtio_pci, virtio_net); for 6.1: button, evdev, virtio_ring,
// virtio_pci_modern_dev, virtio_pci_legacy_dev, virtio, virtio_pci, failover,
// net_failover, virtio_net. The agent loads it with finit_module(2) before
// anything else; a module that fails does not stop the others. button
// (CONFIG_ACPI_BUTTON=m) and evdev (CONFIG_INPUT_EVDEV=m) are what lets the
// guest hear the ACPI power button; together they add about 0.1 s to a TCG
// boot.
//
// The device list, /etc/firstboot-guest/modules.devices, adds what the
// closure of DefaultDeviceModules needs beyond the boot list, for the
// devices a lab machine can have: virtio_console (virtio-serial, for
// qemu-ga), virtio_blk, virtio_scsi, ata_piix (IDE), ahci (SATA), nvme, the
// xHCI/EHCI/UHCI USB host controllers and usb_storage, sr_mod and cdrom,
// sd_mod, isofs, vfat, floppy. The agent loads it in the background while
// the network comes up (under TCG it takes one to two seconds, which would
// otherwise delay DHCP). A driver whose hardware is missing (floppy without
// a controller: ENODEV) is reported as absent, not as a failure. The TPM
// drivers (tpm_tis, tpm_crb, tpm_tis_core) are built into Debian's kernel,
// so a TPM needs no module.
//
// # qemu-ga
//
// When the virtio-serial port named org.qemu.guest_agent.0 exists (found
// through /sys/class/virtio-ports/*/name; the agent also creates udev's
// /dev/virtio-ports/<name> links), the agent runs
//
//	/usr/sbin/qemu-ga -m virtio-serial -p /dev/vportNpM -f /run/qemu-ga/qemu-ga.pid -t /run/qemu-ga
//
// with its log in /run/firstboot-guest/qemu-ga.log, and starts it again
// when it exits (after 1 s, doubling to 30 s; reset after a minute's run).
// libvirt's guest_exec (guest-exec, guest-exec-status) then runs any
// program, e.g. /bin/sh -c "..." (busybox), with captured output;
// guest-get-osinfo reads /etc/os-release (id firstboot-testguest);
// guest-shutdown runs /sbin/shutdown, a script that powers off, reboots or
// halts at once through busybox. /mnt is there to mount media.

// # Boot behaviour
//
// The agent runs as PID 1 only to mount /proc, /sys, /dev (devtmpfs),
// /dev/pts, /run and /tmp, start itself again as the agent and reap every
// process (a crashed agent leaves a shell on the console instead of a kernel
// panic). The agent then prints one console line per phase, always in this
// order, each "FIRSTBOOT-GUEST <phase> <detail>":
//
//	boot     kernel=<release> agent=1
//	config   warn <text>                 (only for bad fbguest.* parameters)
//	modules  ok|fail loaded=<m1,m2,...>   (the boot list)
//	link     ok|fail if=eth0 mac=<mac>
//	dhcp     ok ip=<a> subnet=<m> router=<r> dns=<d,...> ntp=<n,...> hostname=<h> vendor=<v>
//	         (a failed attempt prints "dhcp fail attempt=N ..." and retries forever)
//	dns      ok|fail name=<n> [addrs=<a,...>]       one per fbguest.names entry
//	ntp      ok|fail server=<s> ...                 DHCP option 42 servers first, then fbguest.ntp
//	http     ok|fail url=<u> [status=<code> bytes=<n>]
//	https    ok|fail host=<h> url=<u> [status=...]
//	quic     ok|fail host=<h> [handshake=ok]
//	ready    console commands accepted
//	checkin  ok|fail seq=<n> url=<u> ...            every fbguest.checkin, fbguest.checkins times
//
// and, at any time after "modules", not in a fixed order with the lines
// above:
//
//	devices  ok|fail loaded=<m1,...> [absent=<m,...>]   the device list is loaded
//	qga      ok dev=/dev/vportNpM port=org.qemu.guest_agent.0 pid=<pid>
//	         qemu-ga started (again after each exit); under TCG usually
//	         right after "modules", before "link"
//	qga      fail exited dev=<dev> port=<port> after=<duration> err="<why>"
//	         qemu-ga exited (or "qga fail dev=... err=..." when it could not
//	         start); it is started again
//	qga      none port=org.qemu.guest_agent.0 ports=<names> (...)
//	         once, 10 s after "modules", when the machine has no such port;
//	         the agent keeps watching for it
//	poweroff acpi                         the ACPI power button was pressed
//
// "fail" details end with err="<quoted error>". A phase failing never stops
// the sequence: the guest keeps producing the traffic a scenario expects
// even when a responder is missing. Each action is bounded by
// fbguest.timeout and never retried, so the traffic is exactly:
//
//   - DHCP (busybox udhcpc): DISCOVER/REQUEST with option 12 hostname
//     "firstboot-testguest", option 60 vendor class "firstboot-testguest/1",
//     the default parameter request list plus option 42 (NTP servers). udhcpc
//     stays running to renew the lease; its event script (embedded in the
//     agent) sets address, default route and /etc/resolv.conf.
//   - DNS: Go's resolver (A and AAAA for each name) to the DHCP DNS server.
//     Default names: connectivity.firstboot.test, time.firstboot.test,
//     updates.firstboot.test, telemetry.example.com.
//   - NTP: one SNTPv4 client request (mode 3) per server; the clock is not set.
//   - HTTP: GET http://connectivity.firstboot.test/generate_204,
//     User-Agent "firstboot-testguest/1", redirects not followed.
//   - HTTPS: Go crypto/tls ClientHello with SNI updates.firstboot.test
//     (certificate not verified), then GET /.
//   - QUIC: a quic-go handshake (ALPN h3) to quic.firstboot.test:443, whose
//     Initial carries the SNI.
//   - check-ins: GET http://updates.firstboot.test/checkin?seq=N.
//
// # Power button
//
// Like a real OS, the guest powers off cleanly on an ACPI power-button press
// (libvirt's ACPI shutdown, QEMU's system_powerdown): the ACPI button driver
// reports it as an EV_KEY KEY_POWER press on its input device; the agent
// reads every /dev/input/event* (rescanned every 2 s), prints
// "FIRSTBOOT-GUEST poweroff acpi", syncs and powers off through ACPI
// (reboot(2) LINUX_REBOOT_CMD_POWER_OFF), at once, even while a console
// command is running. libvirt's ACPI reboot is the same press followed by a
// reset from libvirt once the guest has powered off, so it works too. A
// press before the modules are loaded (the first second or two of boot) is
// not heard.
//
// The kernel itself adds IPv6 link-local chatter (router solicitation, MLD)
// and ARP, as any Linux does.
//
// # Kernel command line (fbguest.*)
//
//	fbguest.checkin=30s        check-in interval (Go duration); 0 disables
//	fbguest.checkins=3         number of check-ins; 0 means forever
//	fbguest.timeout=5s         bound on each network action
//	fbguest.hostname=firstboot-testguest   DHCP option 12 and the guest's host name
//	fbguest.vendor=firstboot-testguest/1   DHCP option 60
//	fbguest.names=a,b,...      names for the dns phase (empty: none)
//	fbguest.ntp=time.firstboot.test        extra NTP servers (empty: none)
//	fbguest.http=URL           connectivity check URL
//	fbguest.https=HOST[:PORT]  TLS target (empty: skip)
//	fbguest.quic=HOST[:PORT]   QUIC target (empty: skip)
//	fbguest.checkin_url=URL    check-in URL (seq=N is appended)
//	fbguest.firstrun=0         skip the dns…quic phases (console-driven runs)
//
// Unknown or bad values keep the default and print a "config warn" marker.
//
// # Console protocol
//
// After "ready" the agent reads lines from the serial console (ttyS0, in
// canonical mode with echo, so the typed line is echoed back; only lines
// starting with FIRSTBOOT-GUEST are the agent's). Commands run one at a time
// in the order received; check-ins run concurrently.
//
//	fbguest ping ID
//	    -> FIRSTBOOT-GUEST pong ID
//	fbguest run ID ACTION [ARG] [ACTION [ARG]]...     (at most 16 actions)
//	    -> FIRSTBOOT-GUEST start ID
//	    -> FIRSTBOOT-GUEST action ID <n> <kind> ok|fail <detail>   one per action
//	    -> FIRSTBOOT-GUEST done ID ok|fail failed=<count>
//	bad command
//	    -> FIRSTBOOT-GUEST error ID|- <reason>
//
// ID is 1-64 characters of A-Z a-z 0-9 . _ -. Actions:
//
//	dns NAME            resolve NAME (A and AAAA)
//	http URL            GET an http:// or https:// URL
//	https HOST[:PORT]   GET https://HOST/ (TLS ClientHello with SNI HOST)
//	quic HOST[:PORT]    QUIC handshake, default port 443
//	ntp HOST[:PORT]     one SNTP request, default port 123
//	tcp HOST:PORT       open and close a TCP connection
//	sleep SECONDS       wait (0-3600, fractions allowed)
//	poweroff | reboot   must be last; "done ID" is printed first, then
//	                    "FIRSTBOOT-GUEST poweroff|reboot ID", then the guest
//	                    syncs and powers off (ACPI) or restarts
//
// Lines not starting with "fbguest" are ignored.
package guest
