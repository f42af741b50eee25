// Command firstboot-guest is the test guest's init and agent: it behaves like
// a small OS on its first boot (modules, DHCP, DNS, NTP, HTTP, HTTPS, QUIC,
// periodic check-ins), prints a console marker for each phase and then runs
// commands typed on the serial console. It must be built static
// (CGO_ENABLED=0); the image builder (lab/guest) installs it as /init.
// The behaviour and the console protocol are documented in lab/guest/doc.go.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const markerPrefix = "FIRSTBOOT-GUEST"

// console writes whole marker lines; goroutines share it.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

// mark prints "FIRSTBOOT-GUEST <phase> <detail>" as one line. Newlines in
// the detail are flattened so a marker is always exactly one line.
func (c *console) mark(phase string, detail string) {
	detail = strings.NewReplacer("\r", " ", "\n", " ").Replace(detail)
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "%s %s %s\n", markerPrefix, phase, detail)
}

// result formats an action outcome: "ok DETAIL" or `fail DETAIL err="…"`.
func result(detail string, err error) string {
	if err != nil {
		return strings.TrimSpace(fmt.Sprintf("fail %s err=%q", detail, err.Error()))
	}
	return strings.TrimSpace("ok " + detail)
}

func main() {
	switch {
	case os.Getpid() == 1:
		initMain()
	case len(os.Args) > 1 && os.Args[1] == "agent":
		agentMain()
	default:
		fmt.Fprintln(os.Stderr, "firstboot-guest is the init of the firstboot test guest; it runs inside the guest (see lab/guest).")
		os.Exit(2)
	}
}

func agentMain() {
	// quic-go warns about UDP buffer sizes on stderr, which is the console.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	con := &console{w: os.Stdout}
	ctx := context.Background()

	cmdline, _ := os.ReadFile("/proc/cmdline")
	cfg, warns := ParseCmdline(string(cmdline))
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	con.mark("boot", fmt.Sprintf("kernel=%s agent=1", unix.ByteSliceToString(uts.Release[:])))
	for _, w := range warns {
		con.mark("config", "warn "+w)
	}
	_ = unix.Sethostname([]byte(cfg.Hostname))

	mods, err := loadModules(moduleList)
	con.mark("modules", result("loaded="+strings.Join(mods, ","), err))
	// The ACPI power button (libvirt's shutdown, QEMU's system_powerdown)
	// arrives as KEY_POWER from the button driver's input device.
	go watchPowerButton(ctx, inputDir, 2*time.Second, func(string) { powerOff(con, "acpi") })
	// The device modules (virtio-serial, disks, media) load while the
	// network comes up. qemu-ga starts as soon as virtio_console, the first
	// of them, has reported the guest-agent port.
	go func() {
		devs, absent, err := loadDeviceModules(deviceModuleList)
		detail := "loaded=" + strings.Join(devs, ",")
		if len(absent) > 0 {
			detail += " absent=" + strings.Join(absent, ",")
		}
		con.mark("devices", result(detail, err))
	}()
	go newQGASupervisor(con).run(ctx)

	_ = busybox("ip", "link", "set", "lo", "up")
	ifname, err := waitForNIC(10 * time.Second)
	if err == nil {
		err = busybox("ip", "link", "set", ifname, "up")
	}
	con.mark("link", result(fmt.Sprintf("if=%s mac=%s", ifname, readMAC(ifname)), err))
	if err != nil {
		commandLoop(ctx, con, cfg)
		return
	}

	var lease Lease
	for attempt := 1; ; attempt++ {
		lease, err = dhcp(cfg, ifname, 30*time.Second)
		if err == nil {
			break
		}
		con.mark("dhcp", result(fmt.Sprintf("attempt=%d", attempt), err))
		time.Sleep(2 * time.Second)
	}
	con.mark("dhcp", result(fmt.Sprintf("ip=%s subnet=%s router=%s dns=%s ntp=%s hostname=%s vendor=%s",
		lease.IP, lease.Subnet, lease.Router, strings.Join(lease.DNS, ","), strings.Join(lease.NTP, ","),
		cfg.Hostname, cfg.Vendor), nil))

	if !cfg.SkipFirstRun {
		firstRun(ctx, con, cfg, lease)
	}
	con.mark("ready", "console commands accepted")
	if cfg.Checkin > 0 {
		go checkins(ctx, con, cfg)
	}
	commandLoop(ctx, con, cfg)
}

// firstRun is the fixed sequence of a first boot's network chatter, in the
// order the markers document.
func firstRun(ctx context.Context, con *console, cfg Config, lease Lease) {
	for _, n := range cfg.Names {
		con.mark("dns", result(runAction(ctx, cfg, Action{Kind: "dns", Arg: n})))
	}
	servers := append(append([]string{}, lease.NTP...), cfg.NTP...)
	for _, s := range servers {
		con.mark("ntp", result(runAction(ctx, cfg, Action{Kind: "ntp", Arg: s})))
	}
	if len(servers) == 0 {
		con.mark("ntp", "skip no server")
	}
	if cfg.HTTPURL != "" {
		con.mark("http", result(runAction(ctx, cfg, Action{Kind: "http", Arg: cfg.HTTPURL})))
	}
	if cfg.HTTPSHost != "" {
		con.mark("https", result(runAction(ctx, cfg, Action{Kind: "https", Arg: cfg.HTTPSHost})))
	}
	if cfg.QUICHost != "" {
		con.mark("quic", result(runAction(ctx, cfg, Action{Kind: "quic", Arg: cfg.QUICHost})))
	}
}

func checkins(ctx context.Context, con *console, cfg Config) {
	t := time.NewTicker(cfg.Checkin)
	defer t.Stop()
	for seq := 1; cfg.Checkins == 0 || seq <= cfg.Checkins; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		url := cfg.CheckinURL
		if strings.Contains(url, "?") {
			url += fmt.Sprintf("&seq=%d", seq)
		} else {
			url += fmt.Sprintf("?seq=%d", seq)
		}
		res, err := runAction(ctx, cfg, Action{Kind: "http", Arg: url})
		con.mark("checkin", result(fmt.Sprintf("seq=%d %s", seq, res), err))
	}
}

// commandLoop reads console lines and runs commands one at a time, in the
// order received.
func commandLoop(ctx context.Context, con *console, cfg Config) {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 4096), 64*1024)
	for {
		for sc.Scan() {
			handleLine(ctx, con, cfg, sc.Text())
		}
		// The console can report EOF or an error (e.g. a hangup); keep
		// listening rather than leaving the guest deaf.
		time.Sleep(time.Second)
		sc = bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 4096), 64*1024)
	}
}

func handleLine(ctx context.Context, con *console, cfg Config, line string) {
	c, err := ParseCommand(strings.TrimRight(line, "\r"))
	if err == errNotCommand {
		return
	}
	if err != nil {
		id := c.ID
		if id == "" {
			id = "-"
		}
		con.mark("error", fmt.Sprintf("%s %s", id, err))
		return
	}
	switch c.Verb {
	case "ping":
		con.mark("pong", c.ID)
		return
	}
	con.mark("start", c.ID)
	failed := 0
	for i, a := range c.Actions {
		switch a.Kind {
		case "poweroff", "reboot":
			con.mark("done", fmt.Sprintf("%s %s failed=%d", c.ID, okFail(failed), failed))
			con.mark(a.Kind, c.ID)
			unix.Sync()
			cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
			if a.Kind == "reboot" {
				cmd = unix.LINUX_REBOOT_CMD_RESTART
			}
			if err := unix.Reboot(cmd); err != nil {
				con.mark("error", fmt.Sprintf("%s %s: %v", c.ID, a.Kind, err))
			}
			return
		}
		res, err := runAction(ctx, cfg, a)
		if err != nil {
			failed++
		}
		con.mark("action", fmt.Sprintf("%s %d %s %s", c.ID, i+1, a.Kind, result(res, err)))
	}
	con.mark("done", fmt.Sprintf("%s %s failed=%d", c.ID, okFail(failed), failed))
}

func okFail(failed int) string {
	if failed == 0 {
		return "ok"
	}
	return "fail"
}
