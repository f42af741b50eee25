package libvirt

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/testvm"
	"github.com/firstboot/firstboot/lab/guest"
)

// testGuest is a kernel and a busybox initramfs whose init loads virtio-net,
// says FIRSTBOOT-INIT on the console and runs udhcpc: the guest's first
// packet is its DHCP DISCOVER.
type testGuest struct {
	Kernel, Initrd, Cmdline string
}

// virtioNetModules is the load order LAB-FACTS measured for Debian's kernel.
var virtioNetModules = []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "failover", "net_failover", "virtio_net"}

const testInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in %s; do insmod /lib/modules/$m.ko || echo "FIRSTBOOT-INSMOD-FAILED $m"; done
echo FIRSTBOOT-INIT
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 5 -T 2 -s /udhcpc.sh
echo FIRSTBOOT-DHCP-DONE
sleep 2
poweroff -f
`

const testUdhcpcScript = `#!/bin/sh
if [ "$1" = bound ]; then
  ip addr add "$ip/${mask:-24}" dev "$interface"
  echo "FIRSTBOOT-LEASE $ip"
fi
exit 0
`

// needGuest finds a kernel and its virtio-net modules and builds the
// initramfs in dir. The kernel and modules come from FIRSTBOOT_TEST_KERNEL
// (a Debian vmlinuz) and FIRSTBOOT_TEST_MODULES (a directory of .ko files),
// or else from the test guest image in the image cache (FIRSTBOOT_IMAGE_CACHE,
// default ~/.cache/firstboot/images; `firstboot image build testguest`). It
// skips when neither is there.
func needGuest(t *testing.T, dir string) testGuest {
	t.Helper()
	kernel, mods := os.Getenv("FIRSTBOOT_TEST_KERNEL"), os.Getenv("FIRSTBOOT_TEST_MODULES")
	if kernel == "" || mods == "" {
		kernel, mods = kernelFromImageCache(t, dir)
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testenv.Missing(t, "busybox-static needed: %v", err)
	}
	var buf bytes.Buffer
	w := &cpioWriter{w: &buf}
	for _, d := range []string{"bin", "dev", "proc", "sys", "lib", "lib/modules", "etc", "tmp"} {
		w.entry(d, 0o040755, nil)
	}
	w.entry("bin/busybox", 0o100755, busybox)
	w.entry("bin/sh", 0o120777, []byte("busybox"))
	w.entry("init", 0o100755, []byte(fmt.Sprintf(testInit, joinSpace(virtioNetModules))))
	w.entry("udhcpc.sh", 0o100755, []byte(testUdhcpcScript))
	for _, m := range virtioNetModules {
		b, err := os.ReadFile(filepath.Join(mods, m+".ko"))
		if err != nil {
			t.Fatalf("module %s: %v", m, err)
		}
		w.entry("lib/modules/"+m+".ko", 0o100644, b)
	}
	w.trailer()
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(initrd, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return testGuest{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1 loglevel=4 ipv6.disable=1"}
}

func joinSpace(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

// cpioWriter writes the "newc" initramfs format (see the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst).
type cpioWriter struct {
	w   *bytes.Buffer
	ino int
}

func (c *cpioWriter) entry(name string, mode uint32, data []byte) {
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.w.WriteString(name)
	c.w.WriteByte(0)
	c.pad()
	c.w.Write(data)
	c.pad()
}

func (c *cpioWriter) pad() {
	for c.w.Len()%4 != 0 {
		c.w.WriteByte(0)
	}
}

func (c *cpioWriter) trailer() { c.entry("TRAILER!!!", 0, nil) }

// kernelFromImageCache takes the kernel of the built test guest and copies
// the virtio-net modules out of its initramfs into dir/modules.
func kernelFromImageCache(t *testing.T, dir string) (kernel, mods string) {
	t.Helper()
	img := testvm.TestGuest(t, testImageCache())
	f, err := os.Open(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("test guest initrd %s: %v", img.Initrd, err)
	}
	entries, err := guest.ReadCPIO(zr)
	if err != nil {
		t.Fatalf("test guest initrd %s: %v", img.Initrd, err)
	}
	mods = filepath.Join(dir, "modules")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range entries {
		base := filepath.Base(e.Name)
		for _, m := range virtioNetModules {
			if base == m+".ko" {
				if err := os.WriteFile(filepath.Join(mods, base), e.Data, 0o644); err != nil {
					t.Fatal(err)
				}
				found++
			}
		}
	}
	if found != len(virtioNetModules) {
		testenv.Missing(t, "test guest initrd has %d of the %d virtio-net modules (compressed?)", found, len(virtioNetModules))
	}
	return img.Kernel, mods
}
