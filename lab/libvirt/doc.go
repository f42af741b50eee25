// Package libvirt implements the lab (lab.Network, lab.Machine) with libvirtd
// and QEMU through go-libvirt.
//
// Daemons. Up starts virtlogd and libvirtd inside the network namespace
// cfg.Netns ("firstboot") with `ip netns exec`, which also gives them
// /etc/netns/<ns>/libvirt as /etc/libvirt: firstboot's own qemu.conf (QEMU as
// root, no relabelling) and its own persistent definitions, apart from the
// host's. Pid files and lab.json go to cfg.StateDir. A daemon firstboot
// started earlier that still answers is reused; one started from another
// state dir (a test, `firstboot lab up`) is shared; dead ones are cleaned up
// together with the firstboot-* domains, networks and dnsmasq they left
// (except those of processes that still run).
// There is one libvirtd per host (its socket path is fixed).
//
// Ownership. StartedDaemons tells whether this Up started the daemons. Down
// stops them then, and also when their owner has ended or released them to
// this process, but not while another process's firstboot machine still
// runs (then that process's Down, or `firstboot lab down`, i.e. Stop, does it).
//
// Orphans. Machines and networks record their owner (internal/owner: pid,
// start time, boot, host) in their <metadata>, machines also their overlay
// files; machines are started with autodestroy, so their QEMU ends with the
// owner's connection. Up first reaps what owners that have ended left
// (Reap: definitions, overlays, networks, and through lab/simnet their
// redirect rules), never what a live process owns; Orphans lists the same
// without changing anything.
//
// External libvirtd. With cfg.LibvirtURI ("qemu:///system", optionally
// "?socket=PATH"; remote transports are not supported) Up only connects; the
// namespace for capture and responders is the daemon's own, found from the
// socket's peer (/proc/PID/ns/net). Bridged networks need this mode.
//
// Deadlines. go-libvirt calls take no context; every call here runs under
// one (default two minutes) and returns when it ends.
package libvirt
