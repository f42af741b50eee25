package guest

import (
	"bytes"
	"github.com/firstboot/firstboot/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

type cpioFixture struct {
	dirs     []string
	files    map[string]string
	links    map[string]string
	chardevs map[string][2]uint32
}

func fixture() cpioFixture {
	return cpioFixture{
		dirs: []string{"bin", "dev", "etc", "etc/sub"},
		// Sizes 0..5 and a larger one exercise every padding case.
		files: map[string]string{
			"etc/empty": "", "etc/a": "1", "etc/ab": "12", "etc/abc": "123", "etc/abcd": "1234",
			"etc/sub/abcde": "12345", "init": strings.Repeat("x", 70001),
		},
		links:    map[string]string{"bin/sh": "/bin/busybox", "bin/ls": "busybox"},
		chardevs: map[string][2]uint32{"dev/console": {5, 1}, "dev/null": {1, 3}},
	}
}

func writeFixture(t *testing.T, f cpioFixture) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewCPIOWriter(&buf)
	for _, d := range f.dirs {
		if err := w.Dir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range sortedKeys(f.files) {
		if err := w.File(n, 0o644, []byte(f.files[n])); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range sortedKeys(f.links) {
		if err := w.Symlink(n, f.links[n]); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range sortedKeys(f.chardevs) {
		d := f.chardevs[n]
		if err := w.CharDev(n, 0o600, d[0], d[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}
	return buf.Bytes()
}

func sortedKeys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// TestCPIOReadByCpioTool checks the archive with GNU cpio, an independent
// reader of the newc format.
func TestCPIOReadByCpioTool(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		testenv.Missing(t, "cpio not installed")
	}
	f := fixture()
	arch := writeFixture(t, f)

	list := exec.Command("cpio", "-it", "--quiet")
	list.Stdin = bytes.NewReader(arch)
	out, err := list.Output()
	if err != nil {
		t.Fatalf("cpio -it: %v", err)
	}
	var want []string
	want = append(want, f.dirs...)
	want = append(want, sortedKeys(f.files)...)
	want = append(want, sortedKeys(f.links)...)
	want = append(want, sortedKeys(f.chardevs)...)
	if got := strings.Fields(string(out)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("cpio -it lists\n%v\nwant\n%v", got, want)
	}

	dir := t.TempDir()
	ex := exec.Command("cpio", "-idm", "--quiet", "--no-absolute-filenames")
	ex.Dir = dir
	ex.Stdin = bytes.NewReader(arch)
	if out, err := ex.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, out)
	}
	for n, data := range f.files {
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || string(got) != data {
			t.Errorf("%s: extracted %d bytes (err %v), want %d", n, len(got), err, len(data))
		}
		if st, err := os.Stat(filepath.Join(dir, n)); err == nil && st.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v", n, st.Mode())
		}
	}
	for n, target := range f.links {
		if got, err := os.Readlink(filepath.Join(dir, n)); err != nil || got != target {
			t.Errorf("%s: link %q (err %v), want %q", n, got, err, target)
		}
	}
	if os.Geteuid() == 0 {
		st, err := os.Lstat(filepath.Join(dir, "dev/console"))
		if err != nil || st.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("dev/console: %v, %v; want a character device", st, err)
		}
	}
}

func TestCPIORoundTrip(t *testing.T) {
	f := fixture()
	entries, err := ReadCPIO(bytes.NewReader(writeFixture(t, f)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]CPIOEntry{}
	for _, e := range entries {
		got[e.Name] = e
	}
	for n, data := range f.files {
		if e := got[n]; e.Mode != modeRegular|0o644 || string(e.Data) != data {
			t.Errorf("%s: mode %o, %d bytes", n, e.Mode, len(e.Data))
		}
	}
	for n, d := range f.chardevs {
		if e := got[n]; e.Mode != modeCharDev|0o600 || e.RdevMajor != d[0] || e.RdevMinor != d[1] {
			t.Errorf("%s: mode %o dev %d,%d", n, e.Mode, e.RdevMajor, e.RdevMinor)
		}
	}
	for n, target := range f.links {
		if e := got[n]; e.Mode&0o170000 != modeSymlink || string(e.Data) != target {
			t.Errorf("%s: mode %o target %q", n, e.Mode, e.Data)
		}
	}
}

func TestCPIOWriterRejects(t *testing.T) {
	tests := []struct {
		name string
		do   func(w *CPIOWriter) error
	}{
		{"empty name", func(w *CPIOWriter) error { return w.File("", 0o644, nil) }},
		{"root", func(w *CPIOWriter) error { return w.Dir("/", 0o755) }},
		{"trailer name", func(w *CPIOWriter) error { return w.File("TRAILER!!!", 0o644, nil) }},
		{"duplicate", func(w *CPIOWriter) error {
			if err := w.File("a", 0o644, nil); err != nil {
				return nil
			}
			return w.File("/a", 0o644, nil)
		}},
		{"empty link target", func(w *CPIOWriter) error { return w.Symlink("a", "") }},
		{"after close", func(w *CPIOWriter) error {
			if err := w.Close(); err != nil {
				return nil
			}
			return w.File("a", 0o644, nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(NewCPIOWriter(&bytes.Buffer{})); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestReadCPIOTruncated(t *testing.T) {
	arch := writeFixture(t, fixture())
	for _, n := range []int{0, 5, 110, 111, 200, len(arch) - 200, len(arch) - 1} {
		if _, err := ReadCPIO(bytes.NewReader(arch[:n])); err == nil {
			t.Errorf("archive cut at %d of %d: no error", n, len(arch))
		}
	}
}

func FuzzReadCPIO(f *testing.F) {
	var buf bytes.Buffer
	w := NewCPIOWriter(&buf)
	_ = w.File("a", 0o644, []byte("abc"))
	_ = w.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ReadCPIO(bytes.NewReader(b))
	})
}
