// Package osimage builds the Debian images firstboot studies ("debian-12",
// "debian-13"): a stock-like minimal install (systemd, systemd-timesyncd, the
// distribution kernel, ifupdown with DHCP on the first NIC, apt pointed at
// deb.debian.org) made with debootstrap from the machine's Debian mirror,
// plus qemu-guest-agent: Debian's udev rule starts it when the machine has
// the org.qemu.guest_agent.0 virtio-serial port, so guest_exec works; it
// sends nothing on the network.
//
// The root file system is written straight into an ext4 image with
// `mkfs.ext4 -d` (no loop devices, no mounts) and converted to qcow2. The
// image has no partition table and no boot loader: it boots by direct kernel
// boot with the kernel and initrd copied out of the root file system, so a
// machine needs Kernel, Initrd, Cmdline and Disk (see Image.MachineSpec).
// The kernel is the uncompressed vmlinux (PVH entry, faster under TCG),
// except on a machine with a TPM, which boots the bzImage (Image.KernelFor):
// with a TPM, QEMU's PVH boot leaves the kernel without ACPI.
package osimage
