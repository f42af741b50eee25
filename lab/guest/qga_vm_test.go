package guest_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testvm"
)

// qgaClient speaks the guest agent's protocol (one JSON object per line)
// on QEMU's end of the virtio-serial port.
type qgaClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	id   int
}

func dialQGA(t *testing.T, sock string) *qgaClient {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("connecting to the guest-agent socket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &qgaClient{t: t, conn: conn, r: bufio.NewReader(conn), id: int(time.Now().UnixNano() % 1e9)}
	// guest-sync discards whatever an earlier client left in the channel:
	// skip replies until the one carrying our id.
	c.send("guest-sync", map[string]any{"id": c.id})
	for {
		var reply struct {
			Return json.RawMessage `json:"return"`
		}
		c.read(&reply)
		if string(reply.Return) == fmt.Sprint(c.id) {
			return c
		}
	}
}

func (c *qgaClient) send(cmd string, args map[string]any) {
	c.t.Helper()
	m := map[string]any{"execute": cmd}
	if args != nil {
		m["arguments"] = args
	}
	b, _ := json.Marshal(m)
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("qga %s: %v", cmd, err)
	}
}

func (c *qgaClient) read(v any) {
	c.t.Helper()
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		c.t.Fatalf("qga: reading a reply: %v", err)
	}
	if err := json.Unmarshal(line, v); err != nil {
		c.t.Fatalf("qga: reply %q: %v", line, err)
	}
}

// call runs a command and decodes its "return" into ret.
func (c *qgaClient) call(cmd string, args map[string]any, ret any) {
	c.t.Helper()
	c.send(cmd, args)
	var reply struct {
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	c.read(&reply)
	if reply.Error != nil {
		c.t.Fatalf("qga %s: %s: %s", cmd, reply.Error.Class, reply.Error.Desc)
	}
	if ret != nil {
		if err := json.Unmarshal(reply.Return, ret); err != nil {
			c.t.Fatalf("qga %s: return %s: %v", cmd, reply.Return, err)
		}
	}
}

// exec runs /bin/sh -c script in the guest through guest-exec and polls
// guest-exec-status until it ends.
func (c *qgaClient) exec(script string) (code int, stdout, stderr string) {
	c.t.Helper()
	var started struct {
		PID int `json:"pid"`
	}
	c.call("guest-exec", map[string]any{"path": "/bin/sh", "arg": []string{"-c", script}, "capture-output": true}, &started)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st struct {
			Exited   bool   `json:"exited"`
			ExitCode int    `json:"exitcode"`
			OutData  string `json:"out-data"`
			ErrData  string `json:"err-data"`
		}
		c.call("guest-exec-status", map[string]any{"pid": started.PID}, &st)
		if st.Exited {
			out, _ := base64.StdEncoding.DecodeString(st.OutData)
			errb, _ := base64.StdEncoding.DecodeString(st.ErrData)
			return st.ExitCode, string(out), string(errb)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("guest-exec %q still running after 60s", script)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startSWTPM runs a TPM 2.0 emulator for QEMU's tpm-tis/tpm-crb and returns
// QEMU's arguments for it.
func startSWTPM(t *testing.T, model string) []string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "swtpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir, "--ctrl", "type=unixio,path="+sock)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting swtpm: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 100 {
			t.Fatal("swtpm did not create its socket")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return []string{"-chardev", "socket,id=chrtpm,path=" + sock, "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", model + ",tpmdev=tpm0"}
}

// TestGuestAgentMediaTPM boots the test guest the way lab machines look to
// QEMU — the guest-agent channel, CD-ROMs and disks on each bus, NVMe, USB,
// floppy, a TPM — and checks through qemu-ga's guest-exec that the guest
// sees and uses them: the ISO mounts and its file reads back, each disk's
// first bytes read back, the TPM is a 2.0 device. It also kills qemu-ga to
// see the agent restart it, and ends with guest-shutdown.
func TestGuestAgentMediaTPM(t *testing.T) {
	requireVMTools(t)
	testvm.Require(t, "makes an ISO and a TPM", "xorriso", "swtpm")
	img := testImage(t)

	// The ISO holds a file with a token the guest must read back.
	token := fmt.Sprintf("firstboot-iso-%d", time.Now().UnixNano())
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "token.txt"), []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(t.TempDir(), "media.iso")
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-V", "FBTEST", "-o", iso, src).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v %s", err, out)
	}
	cd := "file=" + iso + ",media=cdrom,if=none,id=cd0,readonly=on"
	// rawDisk makes a disk image whose first line is "token-<id>", which
	// the guest reads back from the block device, and returns QEMU's
	// -drive value for it.
	rawDisk := func(id string, size int, iface string) string {
		p := filepath.Join(t.TempDir(), id+".raw")
		b := make([]byte, size)
		copy(b, "token-"+id+"\n")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return "file=" + p + ",format=raw,if=" + iface + ",id=" + id
	}

	type disk struct{ id, dev string }
	for _, tc := range []struct {
		name    string
		qemu    []string
		iso     bool
		tpm     string // "" or the QEMU TPM model
		disks   []disk
		killQGA bool
	}{
		// BIOS machines: i440fx with IDE, a TPM on the TIS interface.
		{name: "pc-ide-tpm-tis", tpm: "tpm-tis", iso: true, disks: []disk{{"vd", "/dev/vda"}},
			qemu: []string{"-M", "pc", "-drive", cd, "-device", "ide-cd,drive=cd0",
				"-drive", rawDisk("vd", 1<<20, "none"), "-device", "virtio-blk-pci,drive=vd"}},
		// UEFI-style machines: q35 with SATA (AHCI), a CRB TPM.
		{name: "q35-sata-tpm-crb", tpm: "tpm-crb", iso: true, disks: []disk{{"sata", "/dev/sda"}},
			qemu: []string{"-M", "q35", "-drive", cd, "-device", "ide-cd,drive=cd0,bus=ide.0",
				"-drive", rawDisk("sata", 1<<20, "none"), "-device", "ide-hd,drive=sata,bus=ide.1"}},
		// virtio-scsi, no TPM (so the PVH kernel), and qemu-ga killed.
		{name: "pc-virtio-scsi-restart", killQGA: true, iso: true, disks: []disk{{"scsi", "/dev/sda"}},
			qemu: []string{"-M", "pc", "-device", "virtio-scsi-pci,id=scsi0", "-drive", cd, "-device", "scsi-cd,drive=cd0,bus=scsi0.0",
				"-drive", rawDisk("scsi", 1<<20, "none"), "-device", "scsi-hd,drive=scsi,bus=scsi0.0"}},
		// NVMe, a USB stick on xHCI and a 1.44 MB floppy.
		{name: "pc-nvme-usb-floppy", disks: []disk{{"nvme", "/dev/nvme0n1"}, {"usb", "/dev/sda"}, {"fd", "/dev/fd0"}},
			qemu: []string{"-M", "pc", "-drive", rawDisk("nvme", 1<<20, "none"), "-device", "nvme,drive=nvme,serial=fb0001",
				"-device", "qemu-xhci,id=xhci", "-drive", rawDisk("usb", 1<<20, "none"), "-device", "usb-storage,drive=usb,bus=xhci.0",
				"-drive", rawDisk("fd", 1474560, "floppy")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newLabNet(t)
			sock := filepath.Join(t.TempDir(), "qga.sock")
			args := append([]string{"-device", "virtio-serial", "-chardev", "socket,path=" + sock + ",server=on,wait=off,id=qga",
				"-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0"}, tc.qemu...)
			if tc.tpm != "" {
				args = append(args, startSWTPM(t, tc.tpm)...)
			}
			v := startVM(t, n, img.KernelFor(false, tc.tpm != ""), img.Initrd, img.Cmdline+" fbguest.checkin=0 fbguest.firstrun=0", vmOptions{qemu: args})
			from, l := v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST qga ok dev=/dev/vport\d+p\d+ port=org\.qemu\.guest_agent\.0 pid=\d+$`), 0, 120*time.Second)
			t.Logf("qga line %.2fs after QEMU start: %s", l.At.Sub(v.Start).Seconds(), l.Text)
			_, dl := v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST devices `), 0, 120*time.Second)
			if !strings.HasPrefix(dl.Text, "FIRSTBOOT-GUEST devices ok loaded=virtio_console,") {
				t.Errorf("devices line: %q", dl.Text)
			}
			t.Logf("devices line %.2fs after QEMU start", dl.At.Sub(v.Start).Seconds())

			c := dialQGA(t, sock)
			c.call("guest-ping", nil, nil)
			var info struct {
				Version string `json:"version"`
			}
			c.call("guest-info", nil, &info)
			if !strings.HasPrefix(info.Version, "7.2") {
				t.Errorf("guest-info version %q", info.Version)
			}
			code, out, errOut := c.exec("echo out-$((6*7)); echo err-line >&2; exit 7")
			if code != 7 || out != "out-42\n" || errOut != "err-line\n" {
				t.Errorf("guest-exec: exit %d stdout %q stderr %q, want 7 %q %q", code, out, errOut, "out-42\n", "err-line\n")
			}

			// The ISO mounts and reads back (sr_mod, cdrom, isofs and the bus driver).
			if tc.iso {
				code, out, errOut = c.exec("for i in $(seq 50); do [ -b /dev/sr0 ] && break; sleep 0.2; done; mount -t iso9660 -o ro /dev/sr0 /mnt && cat /mnt/token.txt && umount /mnt")
				if code != 0 || strings.TrimSpace(out) != token {
					t.Errorf("reading the ISO: exit %d stdout %q stderr %q", code, out, errOut)
				}
			}
			for _, d := range tc.disks {
				code, out, errOut = c.exec(fmt.Sprintf("for i in $(seq 50); do [ -b %[1]s ] && break; sleep 0.2; done; head -n 1 %[1]s", d.dev))
				if want := "token-" + d.id + "\n"; code != 0 || out != want {
					t.Errorf("disk %s: exit %d stdout %q stderr %q, want %q", d.dev, code, out, errOut, want)
				}
			}
			if tc.tpm != "" {
				code, out, errOut = c.exec("ls /dev/tpm0 /dev/tpmrm0 && cat /sys/class/tpm/tpm0/tpm_version_major")
				if code != 0 || !strings.HasSuffix(out, "\n2\n") {
					t.Errorf("TPM: exit %d stdout %q stderr %q", code, out, errOut)
				}
			}
			if tc.killQGA {
				// No reply comes: the agent dies while answering.
				c.send("guest-exec", map[string]any{"path": "/bin/sh", "arg": []string{"-c", "kill -9 $(pidof qemu-ga)"}})
				from, _ = v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST qga fail exited dev=\S+ port=org\.qemu\.guest_agent\.0 after=\S+ err="signal: killed"$`), from+1, 30*time.Second)
				_, again := v.WaitLine(regexp.MustCompile(`^FIRSTBOOT-GUEST qga ok `), from+1, 30*time.Second)
				if again.Text == l.Text {
					t.Errorf("restarted qemu-ga has the same pid: %q", again.Text)
				}
				c.conn.Close() // QEMU's socket chardev serves one client at a time
				c = dialQGA(t, sock)
				if code, out, _ := c.exec("echo back"); code != 0 || out != "back\n" {
					t.Errorf("guest-exec after the restart: %d %q", code, out)
				}
			}

			// guest-shutdown powers the machine off (libvirt's agent-mode shutdown).
			c.send("guest-shutdown", nil)
			select {
			case <-v.Exited():
			case <-time.After(30 * time.Second):
				t.Fatal("QEMU still running 30s after guest-shutdown")
			}
		})
	}
}
