package libvirt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// hostKey names what decides whether KVM works here: the QEMU binary (a new
// version is a new file), the host kernel, the /dev/kvm device and the CPU
// (model and flags, which show nested virtualisation). Not the guest image,
// nor a reboot of an unchanged host.
func hostKey() string {
	key := "qemu="
	if p, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		if fi, err := os.Stat(p); err == nil {
			key += fmt.Sprintf("%s:%d:%d", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		key += fmt.Sprintf(" kernel=%s %s", unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]))
	}
	key += " kvm="
	var st unix.Stat_t
	if err := unix.Stat("/dev/kvm", &st); err == nil {
		key += fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	} else {
		key += "none"
	}
	return key + " cpu=" + cpuKey()
}

// cpuKey is a short hash of the first CPU's vendor, model and flags.
func cpuKey() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	h := sha256.New()
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			break // the first processor's block ends at the first blank line
		}
		for _, f := range []string{"vendor_id", "cpu family", "model\t", "model name", "flags"} {
			if strings.HasPrefix(line, f) {
				h.Write([]byte(line + "\n"))
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
