package guest

import (
	"bytes"
	"encoding/binary"
	"github.com/firstboot/firstboot/internal/testenv"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// fakeBzImage wraps payload in a minimal boot-protocol 2.15 header the way
// the kernel's build lays it out: one setup sector after the boot sector,
// payload_offset/payload_length pointing into the protected-mode part.
func fakeBzImage(payload []byte, proto uint16) []byte {
	const setupSects = 1
	start := (setupSects + 1) * 512
	const off = 0x40
	img := make([]byte, start+off+len(payload)+16)
	img[0x1f1] = setupSects
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], proto)
	binary.LittleEndian.PutUint32(img[0x248:], off)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	copy(img[start+off:], payload)
	return img
}

// xzKernelStyle compresses like the kernel's build (x86 BCJ + LZMA2, CRC32)
// with the independent xz tool and appends the 4-byte size.
func xzKernelStyle(t *testing.T, data []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		testenv.Missing(t, "xz not installed")
	}
	cmd := exec.Command("xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.AppendUint32(out, uint32(len(data)))
}

func TestExtractVmlinuxErrors(t *testing.T) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	self, err := os.ReadFile(truePath) // a small ELF without a PVH note
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		img     []byte
		wantErr string
	}{
		{"not a bzImage", make([]byte, 4096), "not a bzImage"},
		{"short", []byte("MZ"), "not a bzImage"},
		{"old protocol", fakeBzImage([]byte{1}, 0x206), "boot protocol"},
		{"payload outside", func() []byte {
			b := fakeBzImage([]byte{1}, 0x20f)
			binary.LittleEndian.PutUint32(b[0x24c:], 1<<30)
			return b
		}(), "outside"},
		{"gzip", fakeBzImage([]byte{0x1f, 0x8b, 8, 0}, 0x20f), "only xz"},
		{"unknown", fakeBzImage([]byte("LZ4!LZ4!"), 0x20f), "unknown payload compression"},
		{"xz of non-ELF", fakeBzImage(xzKernelStyle(t, []byte(strings.Repeat("kernel", 1000))), 0x20f), "not ELF"},
		{"xz of ELF without PVH", fakeBzImage(xzKernelStyle(t, self), 0x20f), "no PVH entry note"},
		{"corrupt xz", fakeBzImage(append([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 1}, make([]byte, 64)...), 0x20f), "xz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ExtractVmlinux(tt.img)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
}
