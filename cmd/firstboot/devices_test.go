package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// TestRunDevices runs scenarios/testguest-devices.yaml as a user would: the
// test guest with a TPM, the Penryn CPU model and an empty CD-ROM drive; a
// CD (made here with xorriso, with random content) is inserted after boot,
// read and followed through the guest agent, and ejected. The run directory
// must show what the guest read, the traffic the CD caused in its step, and
// an empty drive after the eject.
func TestRunDevices(t *testing.T) {
	e := newE2E(t)
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Fatal("xorriso is not installed: run scripts/provision.sh")
	}
	// The scenario from the repository, next to the images/ folder it names.
	root := t.TempDir()
	data, err := os.ReadFile("../../scenarios/testguest-devices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	scenario := filepath.Join(root, "scenarios", "testguest-devices.yaml")
	isoPath := filepath.Join(root, "images", "testguest-devices", "driver-cd.iso")
	for _, d := range []string{filepath.Dir(scenario), filepath.Dir(isoPath)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(scenario, data, 0o644); err != nil {
		t.Fatal(err)
	}
	hello, page := randomHex(t), "/driver/"+randomHex(t)
	cd := filepath.Join(root, "cd")
	os.MkdirAll(cd, 0o755)
	os.WriteFile(filepath.Join(cd, "hello.txt"), []byte(hello+"\n"), 0o644)
	os.WriteFile(filepath.Join(cd, "url.txt"), []byte("http://drivers.firstboot.test"+page+"\n"), 0o644)
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-r", "-J", "-V", "DRIVERS", "-o", isoPath, cd).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}

	runs := t.TempDir()
	out, code := e.run(t, "", "run", scenario, "--runs-dir", runs)
	dirs, _ := filepath.Glob(filepath.Join(runs, "*-testguest-devices-*"))
	if len(dirs) != 1 {
		t.Fatalf("run directories %v; run output (exit %d):\n%s", dirs, code, out)
	}
	dir := dirs[0]
	if code != 0 {
		tail, _ := os.ReadFile(filepath.Join(dir, "console.log"))
		t.Fatalf("run: exit %d\n%s\nconsole:\n%s", code, out, lastLines(string(tail), 40))
	}
	m, err := manifest.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != manifest.StatusComplete {
		t.Fatalf("status %s: %s", m.Status, m.Reason)
	}

	// The manifest says what hardware the machine had.
	if hw := m.Machine; !hw.TPM || hw.CPUModel != "Penryn" || len(hw.Media) != 1 || hw.Media[0] != (manifest.Media{Name: "driver-cd", Kind: "cdrom", Inserted: false}) {
		t.Errorf("manifest machine = %+v, want a TPM, Penryn and the driver-cd drive empty at power-on", hw)
	}

	// What the guest agent ran, stored per step and action.
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, "guest-exec", name))
		if err != nil {
			t.Errorf("guest-exec output: %v", err)
		}
		return string(b)
	}
	hw := read("first-boot-3.out")
	if lines := strings.Split(strings.TrimSpace(hw), "\n"); len(lines) != 2 || lines[0] != "2" || !strings.Contains(lines[1], "Penryn") {
		t.Errorf("TPM version and CPU model in the guest = %q (stderr %q), want 2 and a Penryn model name", hw, read("first-boot-3.err"))
	}
	if got := read("driver-cd-2.out"); got != hello+"\n" {
		t.Errorf("the guest read %q from the CD, want %q", got, hello+"\n")
	}
	var actions []manifest.Entry
	for _, en := range m.Timeline {
		if en.Kind == manifest.KindAction {
			actions = append(actions, en)
		}
		if en.Error != "" {
			t.Errorf("timeline entry %s (%s) failed: %s", en.Name, en.Step, en.Error)
		}
	}
	want := []string{"first-boot/guest exec", "driver-cd/insert driver-cd", "driver-cd/guest exec", "driver-cd/guest exec", "eject/guest exec", "eject/eject driver-cd", "eject/guest exec"}
	var got []string
	for _, a := range actions {
		if strings.HasPrefix(a.Name, "guest exec") || strings.HasPrefix(a.Name, "insert") || strings.HasPrefix(a.Name, "eject") {
			n := a.Name
			if strings.HasPrefix(n, "guest exec") {
				n = "guest exec"
				if len(a.Artifacts) != 2 {
					t.Errorf("guest exec in %s has artifacts %v, want .out and .err", a.Step, a.Artifacts)
				}
			}
			got = append(got, a.Step+"/"+n)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("media and guest-exec actions:\n%v\nwant\n%v", got, want)
	}

	// The page the CD named was fetched, in the step that read the CD.
	if rows := tsharkRows(t, filepath.Join(dir, "capture.pcapng"), `http.request.uri == "`+page+`"`); rows != 1 {
		t.Errorf("%d requests for %s in the capture, want 1", rows, page)
	}
	var a schema.Analysis
	b, err := os.ReadFile(filepath.Join(dir, "analysis.json"))
	if err != nil || json.Unmarshal(b, &a) != nil {
		t.Fatalf("analysis.json: %v", err)
	}
	for _, sv := range a.Steps {
		var names []string
		for _, d := range sv.Destinations {
			names = append(names, d.Name)
		}
		has := slices.Contains(names, "drivers.firstboot.test")
		if has != (sv.Name == "driver-cd") {
			t.Errorf("step %s destinations %v: drivers.firstboot.test belongs to driver-cd only", sv.Name, names)
		}
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tsharkRows counts the packets of pcap matching filter.
func tsharkRows(t *testing.T, pcap, filter string) int {
	t.Helper()
	out, err := exec.Command("tshark", "-r", pcap, "-n", "-Y", filter, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	return len(strings.Fields(string(out)))
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
