package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/lab/guest"
	lablibvirt "github.com/firstboot/firstboot/lab/libvirt"
	"github.com/firstboot/firstboot/lab/uplink"
)

// minFreeBytes is the free space below which doctor warns for runs and cache
// (an installer ISO plus an overlay and a capture).
const minFreeBytes = 5 << 30

func newDoctorCmd(a *app) *cobra.Command {
	var noStart bool
	var network string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that this host can run the lab, and say what to fix",
		Long: "Checks libvirt (reachable, or its daemons startable: doctor starts them briefly when " +
			"the lab is down, unless --no-start), QEMU, the accelerator (an honest KVM probe that " +
			"boots the test guest's kernel, else TCG), packet capture, free disk space and the image cache. " +
			"Then what the real-internet modes need here: routed (a default route or --egress, the nat " +
			"table, resolvers) and bridged (--bridge up with a wired port that has carrier). They count " +
			"as failures only for the mode named with --network.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkNetworkMode(network); err != nil {
				return err
			}
			d := &doctor{out: cmd.OutOrStdout()}
			d.run(cmd.Context(), a, noStart)
			d.uplinks(cmd.Context(), a, network)
			if d.failed > 0 {
				return fmt.Errorf("doctor: %d check(s) failed", d.failed)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noStart, "no-start", false, "do not start the lab's daemons to check them")
	addNetworkFlags(cmd, &network)
	return cmd
}

// uplinks reports what the real-internet modes need. A mode's problems fail
// the doctor only when that mode was asked for (--network); otherwise they
// are information.
func (d *doctor) uplinks(ctx context.Context, a *app, mode string) {
	for _, m := range []struct {
		name     string
		findings []uplink.Finding
	}{
		{"routed", uplink.CheckRouted(ctx, a.cfg.Egress)},
		{"bridged", uplink.CheckBridged(ctx, a.cfg.Bridge)},
	} {
		for _, f := range m.findings {
			check := m.name + " " + f.Check
			switch {
			case f.OK:
				d.ok(check, f.Detail)
			case mode == m.name:
				d.fail(check, f.Detail, f.Fix)
			default:
				d.info(check, f.Detail+" (fix for "+m.name+" mode: "+f.Fix+")")
			}
		}
	}
}

type doctor struct {
	out    io.Writer
	failed int
}

func (d *doctor) ok(check, detail string) {
	fmt.Fprintf(d.out, "ok    %-18s %s\n", check, detail)
}

func (d *doctor) info(check, detail string) {
	fmt.Fprintf(d.out, "info  %-18s %s\n", check, detail)
}

func (d *doctor) fail(check, detail, fix string) {
	d.failed++
	fmt.Fprintf(d.out, "FAIL  %-18s %s\n      %-18s fix: %s\n", check, detail, "", fix)
}

func (d *doctor) run(ctx context.Context, a *app, noStart bool) {
	d.root()
	d.tools()
	qemuOK := d.qemu(ctx)
	d.capture()
	d.disk("runs dir", a.cfg.RunsDir)
	d.disk("image cache", a.cfg.ImageCache)
	img, imgErr := guest.Load(a.cfg.ImageCache)
	if imgErr != nil {
		d.fail("test guest", imgErr.Error(), "firstboot image build testguest")
	} else {
		d.ok("test guest", fmt.Sprintf("%s (%s, sha256 %.12s)", img.Dir, img.Manifest.KernelRelease, img.SHA256))
	}
	if qemuOK {
		d.libvirt(ctx, a, noStart, img.Kernel)
	}
}

func (d *doctor) root() {
	if os.Geteuid() != 0 {
		d.fail("root", fmt.Sprintf("running as uid %d", os.Geteuid()), "run firstboot as root (namespaces, libvirtd, AF_PACKET need it)")
		return
	}
	d.ok("root", "running as root")
}

func (d *doctor) tools() {
	var missing []string
	for _, t := range []string{"ip", "iptables", "dnsmasq", "libvirtd", "virtlogd", "qemu-img"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		d.fail("tools", "missing: "+strings.Join(missing, ", "), "sudo scripts/provision.sh")
		return
	}
	d.ok("tools", "ip, iptables, dnsmasq, libvirtd, virtlogd, qemu-img found")
}

func (d *doctor) qemu(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "--version").Output()
	if err != nil {
		d.fail("qemu", "qemu-system-x86_64 not runnable: "+err.Error(), "apt-get install qemu-system-x86 (scripts/provision.sh)")
		return false
	}
	d.ok("qemu", string(bytes.TrimSpace(bytes.SplitN(out, []byte("\n"), 2)[0])))
	return true
}

func (d *doctor) capture() {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0x0300) // ETH_P_ALL, network order
	if err != nil {
		d.fail("capture", "cannot open an AF_PACKET socket: "+err.Error(), "run as root (or grant CAP_NET_RAW)")
		return
	}
	unix.Close(fd)
	d.ok("capture", "AF_PACKET sockets permitted")
}

func (d *doctor) disk(check, dir string) {
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil || probe == "/" || probe == "." {
			break
		}
		probe = parentDir(probe)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(probe, &st); err != nil {
		d.fail(check, fmt.Sprintf("%s: %v", dir, err), "check the path in the config")
		return
	}
	free := st.Bavail * uint64(st.Bsize)
	detail := fmt.Sprintf("%s: %.1f GiB free", dir, float64(free)/(1<<30))
	if free < minFreeBytes {
		d.fail(check, detail, "free space (runs need an overlay, a capture and screenshots; images are large)")
		return
	}
	d.ok(check, detail)
}

func parentDir(p string) string {
	i := strings.LastIndexByte(strings.TrimRight(p, "/"), '/')
	switch {
	case i < 0:
		return "."
	case i == 0:
		return "/"
	}
	return p[:i]
}

func (d *doctor) libvirt(ctx context.Context, a *app, noStart bool, probeKernel string) {
	cfg := a.labConfig()
	cfg.ProbeKernel = probeKernel
	if a.cfg.LibvirtURI == "" && noStart {
		s, err := lablibvirt.GetStatus(cfg)
		if err != nil || !s.LibvirtdAlive {
			d.info("libvirt", "lab is down and --no-start given: libvirt not checked")
			return
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	start := time.Now()
	l, err := lablibvirt.Up(ctx, cfg)
	if err != nil {
		d.fail("libvirt", err.Error(), "sudo scripts/provision.sh; see "+a.cfg.StateDir+"/libvirtd.log")
		return
	}
	defer func() {
		tctx, tcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer tcancel()
		if l.StartedDaemons() {
			if err := l.Down(tctx); err != nil {
				d.fail("lab down", err.Error(), "firstboot lab down")
			}
		} else {
			l.Close()
		}
	}()
	v, err := l.Versions(ctx)
	if err != nil {
		d.fail("libvirt", err.Error(), "restart the lab: firstboot lab down && firstboot lab up")
		return
	}
	how := "lab already up"
	switch {
	case a.cfg.LibvirtURI != "":
		how = "external libvirtd " + a.cfg.LibvirtURI
	case l.StartedDaemons():
		how = fmt.Sprintf("daemons started in netns %s in %s (stopped again)", l.Netns(), time.Since(start).Round(time.Millisecond))
	}
	d.ok("libvirt", fmt.Sprintf("libvirt %s, QEMU %s; %s; first call %s", v.Libvirt, v.QEMU, how, l.FirstCall.Round(time.Millisecond)))
	for _, o := range l.Reaped() {
		d.info("orphans", "reaped what a killed firstboot left: "+o.String())
	}

	r, err := l.ProbeKVM(ctx, probeKernel)
	switch {
	case err != nil:
		d.fail("accelerator", err.Error(), "check /var/log/libvirt/qemu/firstboot-kvmprobe-*.log")
	case a.cfg.Accel == "kvm" && r.Accel != "kvm":
		d.fail("accelerator", "accel=kvm configured but "+r.Reason, "use --accel auto or tcg on this host")
	default:
		detail := fmt.Sprintf("auto → %s: %s (probe %s)", r.Accel, r.Reason, r.Took.Round(time.Millisecond))
		if a.cfg.Accel == "tcg" {
			detail = "tcg forced by config; KVM probe says " + r.Accel + ": " + r.Reason
		}
		d.ok("accelerator", detail)
	}
	if _, err := os.Stat("/usr/share/qemu/firmware"); errors.Is(err, os.ErrNotExist) {
		d.info("uefi", "no UEFI firmware (apt-get install ovmf for firmware: uefi scenarios)")
	}
}
