package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/firstboot/firstboot/internal/browsertest"
	"github.com/firstboot/firstboot/internal/testvm"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// e2eEnv is what the real-VM end-to-end tests share: the built binaries and
// a test guest image in the user's image cache (built once, reused).
type e2eEnv struct {
	bin, cache, state string
}

func newE2E(t *testing.T) *e2eEnv {
	t.Helper()
	requireLab(t)
	env := &e2eEnv{bin: buildFirstboot(t), state: t.TempDir()}
	home, _ := os.UserCacheDir()
	env.cache = filepath.Join(home, "firstboot", "images")
	if c := os.Getenv("FIRSTBOOT_TEST_IMAGE_CACHE"); c != "" {
		env.cache = c // a cache of one's own, while changing how images are built
	}
	agent := testvm.BuildAgent(t)
	if out, code := env.run(t, "", "image", "build", "testguest", "--agent", agent); code != 0 {
		t.Fatalf("image build testguest: exit %d\n%s", code, out)
	}
	return env
}

// requireLab fails (it does not skip) when the lab cannot work: CI provisions
// everything, so a missing piece is a provisioning bug to see, not hide.
func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots real VMs; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the lab needs root (network namespaces, libvirtd, capture): run the tests as root")
	}
	for _, tool := range []string{"libvirtd", "virtlogd", "qemu-system-x86_64", "tshark", "ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run scripts/provision.sh", tool)
		}
	}
}

// logDaemonLogs logs the lab daemons' own logs from the state directory,
// which the test's temporary directory takes with it: a run that could not
// start or reach libvirtd is explained there (seen twice, not yet
// reproduced).
func (e *e2eEnv) logDaemonLogs(t *testing.T) {
	t.Helper()
	for _, name := range []string{"libvirtd.log", "virtlogd.log", "lab.json"} {
		if b, err := os.ReadFile(filepath.Join(e.state, name)); err == nil {
			t.Logf("%s:\n%s", name, b)
		}
	}
}

func (e *e2eEnv) run(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	return runBinary(t, e.bin, dir, append(args, "--state-dir", e.state, "--image-cache", e.cache, "--accel", "tcg")...)
}

// TestRunTestGuest runs the test-guest scenario twice in parallel, the way a
// user would (lab up, two runs, lab down), and checks each run directory: the
// capture read by tshark has the guest's DHCP, DNS, NTP, HTTP and TLS from the
// first packet, no drops, nothing from the host that the guest did not ask
// for, and the per-step analysis puts each step's own traffic in that step.
func TestRunTestGuest(t *testing.T) {
	e := newE2E(t)
	if out, code := e.run(t, "", "lab", "up"); code != 0 {
		t.Fatalf("lab up: exit %d\n%s", code, out)
	}
	t.Cleanup(func() { e.run(t, "", "lab", "down") })

	scenario, err := filepath.Abs("../../scenarios/testguest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A variant of the scenario, as a "different release" would be: its
	// browse step reaches another site.
	data, err := os.ReadFile(scenario)
	if err != nil {
		t.Fatal(err)
	}
	variant := filepath.Join(t.TempDir(), "testguest-variant.yaml")
	vtext := strings.ReplaceAll(string(data), "name: testguest\n", "name: testguest-variant\n")
	vtext = strings.ReplaceAll(vtext, "https news.example.com", "https shop.example.net")
	vtext = strings.ReplaceAll(vtext, `present: ["news.example.com"]`, `present: ["shop.example.net"]`)
	if err := os.WriteFile(variant, []byte(vtext), 0o644); err != nil {
		t.Fatal(err)
	}

	runs, vruns := t.TempDir(), t.TempDir()
	var wg sync.WaitGroup
	type result struct {
		out  string
		code int
	}
	results := make([]result, 3)
	for i, args := range [][]string{{scenario, runs}, {scenario, runs}, {variant, vruns}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].out, results[i].code = e.run(t, "", "run", args[0], "--runs-dir", args[1])
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("run %d: exit %d\n%s", i, r.code, r.out)
		}
		// Not a terminal: plain log lines, no live status drawn in place.
		if strings.ContainsAny(r.out, "\r\x1b") {
			t.Errorf("run %d wrote terminal control characters to a pipe:\n%q", i, r.out)
		}
	}
	if t.Failed() {
		e.logDaemonLogs(t)
	}
	dirs, _ := filepath.Glob(filepath.Join(runs, "*-testguest-*"))
	vdirs, _ := filepath.Glob(filepath.Join(vruns, "*-testguest-variant-*"))
	if len(dirs) != 2 || len(vdirs) != 1 {
		t.Fatalf("want 2 + 1 run directories, found %v and %v", dirs, vdirs)
	}
	macs := map[string]bool{}
	for _, dir := range append(dirs, vdirs...) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m := checkRunDir(t, dir)
			macs[m.Machine.MAC] = true
		})
	}
	if len(macs) != 3 {
		t.Errorf("the three runs did not get three machines: %v", macs)
	}
	if t.Failed() {
		return
	}
	t.Run("results", func(t *testing.T) { checkResults(t, e, dirs, vdirs[0]) })
}

// checkResults is the results acceptance on real runs: the report renders in
// a real browser, a dataset verifies, re-analysis gives the same bytes, a diff
// of two runs of one scenario finds no change beyond its thresholds while a
// diff with the variant lists the difference, and publishing to a failing
// server completes with every file intact and none sent twice.
func checkResults(t *testing.T, e *e2eEnv, dirs []string, variant string) {
	t.Run("report renders", func(t *testing.T) {
		dom := string(browsertest.Run(t, "--dump-dom", "file://"+filepath.Join(dirs[0], "report.html")))
		for _, step := range []string{"first-boot", "browse", "update", "shutdown"} {
			if !strings.Contains(dom, `data-step="`+step+`"`) || !strings.Contains(dom, "<h2>Step: "+step+"</h2>") {
				t.Errorf("the rendered report lacks step %s (band and section)", step)
			}
		}
		if !strings.Contains(dom, `id="timeline-svg"`) {
			t.Error("the rendered report has no timeline")
		}
	})
	t.Run("re-analysis is byte-identical", func(t *testing.T) {
		out := t.TempDir()
		if o, code := e.run(t, "", "analyze", dirs[0], "--out", out, "--format", "none"); code != 0 {
			t.Fatalf("analyze: exit %d\n%s", code, o)
		}
		for _, f := range []string{"analysis.json", "conn.log", "dns.log", "ssl.log", "http.log"} {
			a, _ := os.ReadFile(filepath.Join(dirs[0], f))
			b, _ := os.ReadFile(filepath.Join(out, f))
			if len(a) == 0 || !bytes.Equal(a, b) {
				t.Errorf("%s differs after re-analysis (%d vs %d bytes)", f, len(a), len(b))
			}
		}
	})
	bundle := filepath.Join(t.TempDir(), "bundle")
	t.Run("dataset builds and verifies", func(t *testing.T) {
		args := append([]string{"dataset", "build"}, dirs...)
		args = append(args, "--out", bundle, "--creator", "firstboot CI", "--publisher", "firstboot", "--title", "test guest first boot")
		if o, code := e.run(t, "", args...); code != 0 {
			t.Fatalf("dataset build: exit %d\n%s", code, o)
		}
		if o, code := e.run(t, "", "dataset", "verify", bundle); code != 0 {
			t.Fatalf("dataset verify: exit %d\n%s", code, o)
		}
		steps, _ := filepath.Glob(filepath.Join(bundle, "runs", "*", "steps", "*.pcapng"))
		if len(steps) < 2*4 {
			t.Errorf("want a pcapng per step of each run, found %v", steps)
		}
	})
	failOn := "new-destination,gone-destination,new-third-party,new-plain-http,protocol-change,fingerprint-change"
	t.Run("diff of the same scenario", func(t *testing.T) {
		o, code := e.run(t, "", "diff", dirs[0], dirs[1], "--fail-on", failOn, "--threshold-bytes", "50000", "--threshold-conns", "3")
		if code != 0 {
			t.Errorf("two runs of one scenario differ beyond the thresholds: exit %d\n%s", code, o)
		}
	})
	t.Run("diff of a different scenario", func(t *testing.T) {
		o, code := e.run(t, "", "diff", dirs[0], variant, "--fail-on", failOn)
		if code != exitExpectation {
			t.Errorf("diff with the variant: exit %d, want %d\n%s", code, exitExpectation, o)
		}
		if !strings.Contains(o, "shop.example.net") || !strings.Contains(o, "news.example.com") {
			t.Errorf("the diff does not list the new and the gone destination:\n%s", o)
		}
	})
	t.Run("publish survives a failing server", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(bundle, "MANIFEST")); err != nil {
			t.Skip("no bundle (the dataset subtest failed)")
		}
		srv := newFlakyStore()
		defer srv.Close()
		if o, code := e.run(t, "", "publish", bundle, "--to", srv.URL+"/upload"); code != 0 {
			t.Fatalf("publish: exit %d\n%s", code, o)
		}
		srv.check(t, bundle, "/upload/")
		// A second publish finds everything there and sends nothing.
		before := srv.puts()
		if o, code := e.run(t, "", "publish", bundle, "--to", srv.URL+"/upload"); code != 0 {
			t.Fatalf("second publish: exit %d\n%s", code, o)
		}
		if after := srv.puts(); after != before {
			t.Errorf("the second publish sent %d files again", after-before)
		}
	})
}

func checkRunDir(t *testing.T, dir string) *manifest.Manifest {
	t.Helper()
	for _, f := range []string{"manifest.json", "capture.pcapng", "console.log", "responders.jsonl", "firstboot.log", "scenario.yaml",
		"analysis.json", "conn.log", "dns.log", "ssl.log", "http.log", "ntp.log", "dhcp.log", "fingerprint.log", "report.md", "report.html"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
	m, err := manifest.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != manifest.StatusComplete || m.Capture.Drops != 0 || m.Capture.Packets == 0 || m.Capture.Received != m.Capture.Packets {
		t.Errorf("manifest: status %s (%s), %d packets, %d received, %d drops", m.Status, m.Reason, m.Capture.Packets, m.Capture.Received, m.Capture.Drops)
	}
	pcap := filepath.Join(dir, "capture.pcapng")
	tshark := func(args ...string) []string {
		out, err := exec.Command("tshark", append([]string{"-r", pcap, "-n"}, args...)...).Output()
		if err != nil {
			t.Fatalf("tshark %v: %v", args, err)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	// The capture starts before the guest's first packet: packet 1 is the
	// guest's (its kernel may send IPv6 MLD before DHCP, as real systems do),
	// and the first DHCP message is its DISCOVER, with its hostname.
	if first := tshark("-c", "1", "-T", "fields", "-e", "eth.src"); first[0] != m.Machine.MAC {
		t.Errorf("packet 1 is from %q, want the guest %s", first[0], m.Machine.MAC)
	}
	firstDHCP := tshark("-Y", "dhcp", "-T", "fields", "-e", "eth.src", "-e", "dhcp.option.dhcp", "-e", "dhcp.option.hostname")
	if want := m.Machine.MAC + "\t1\tfirstboot-testguest"; firstDHCP[0] != want {
		t.Errorf("first DHCP packet = %q, want the guest's DISCOVER %q", firstDHCP[0], want)
	}
	if got := len(tshark("-T", "fields", "-e", "frame.number")); uint64(got) != m.Capture.Packets {
		t.Errorf("tshark reads %d packets, manifest says %d", got, m.Capture.Packets)
	}
	for filter, what := range map[string]string{
		"dhcp.option.dhcp == 3 && dhcp.option.vendor_class_id == \"firstboot-testguest/1\"": "DHCP REQUEST with vendor class",
		"dns.flags.response == 0 && dns.qry.name == \"time.firstboot.test\"":                "DNS query",
		"ntp.flags.mode == 3":                                               "NTP client request",
		"http.request.uri == \"/generate_204\"":                             "HTTP connectivity check",
		"tls.handshake.extensions_server_name == \"" + browseSite(m) + "\"": "TLS ClientHello with SNI (browse step)",
		"http.host == \"updates.firstboot.test\"":                           "HTTP request (update step)",
	} {
		if lines := tshark("-Y", filter, "-T", "fields", "-e", "frame.number"); lines[0] == "" {
			t.Errorf("capture has no %s (filter %s)", what, filter)
		}
	}
	// Nothing the host originates unasked: every frame is from the guest, or
	// to the guest (unicast), or the DHCP server's broadcast reply.
	strays := tshark("-Y", "eth.src != "+m.Machine.MAC+" && eth.dst != "+m.Machine.MAC+" && !(udp.srcport == 67)", "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Protocol", "-e", "_ws.col.Info")
	if strays[0] != "" {
		t.Errorf("frames neither from nor to the guest: %q", strays)
	}

	var a schema.Analysis
	data, err := os.ReadFile(filepath.Join(dir, "analysis.json"))
	if err != nil || json.Unmarshal(data, &a) != nil {
		t.Fatalf("analysis.json unreadable: %v", err)
	}
	// A clean lab capture shows no warning; the checksums that do not verify
	// were left to offload (the capture is on the guest's tap, before any NIC).
	if w := a.Summary.Warnings; w == nil || len(w.Problems()) != 0 || w.OffloadTCPChecksums == 0 || w.OffloadUDPChecksums == 0 {
		t.Errorf("warnings of a clean lab capture: %+v (problems %q)", w, w.Problems())
	}
	if a.Host.MAC != m.Machine.MAC || a.Host.DHCPHostname != "firstboot-testguest" {
		t.Errorf("studied machine = %s %q, want %s firstboot-testguest", a.Host.MAC, a.Host.DHCPHostname, m.Machine.MAC)
	}
	steps := map[string][]string{}
	for _, sv := range a.Steps {
		for _, d := range sv.Destinations {
			steps[sv.Name] = append(steps[sv.Name], d.Name)
		}
	}
	has := func(step, name string) bool {
		for _, n := range steps[step] {
			if n == name {
				return true
			}
		}
		return false
	}
	for _, c := range []struct{ step, name string }{
		{"first-boot", "connectivity.firstboot.test"},
		{"first-boot", "updates.firstboot.test"},
		{"browse", browseSite(m)},
		{"update", "updates.firstboot.test"},
	} {
		if !has(c.step, c.name) {
			names := steps[c.step]
			sort.Strings(names)
			t.Errorf("step %s lacks destination %s; has %v", c.step, c.name, names)
		}
	}
	if has("first-boot", browseSite(m)) || has("update", browseSite(m)) {
		t.Errorf("%s leaked out of the browse step", browseSite(m))
	}
	return m
}

// browseSite is the site the run's browse step visits.
func browseSite(m *manifest.Manifest) string {
	if m.Scenario.Name == "testguest-variant" {
		return "shop.example.net"
	}
	return "news.example.com"
}

// TestRunUEFI boots the test guest with UEFI firmware (OVMF starts the kernel
// through its EFI stub) and checks the run like any other.
func TestRunUEFI(t *testing.T) {
	e := newE2E(t)
	data, err := os.ReadFile("../../scenarios/testguest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "  memory: 256MiB\n", "  memory: 256MiB\n  firmware: uefi\n", 1)
	if !strings.Contains(text, "firmware: uefi") {
		t.Fatal("could not make the UEFI variant of the scenario")
	}
	scenario := filepath.Join(t.TempDir(), "testguest.yaml")
	if err := os.WriteFile(scenario, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	runs := t.TempDir()
	if out, code := e.run(t, "", "run", scenario, "--runs-dir", runs); code != 0 {
		t.Fatalf("UEFI run: exit %d\n%s", code, out)
	}
	dirs, _ := filepath.Glob(filepath.Join(runs, "*-testguest-*"))
	if len(dirs) != 1 {
		t.Fatalf("run directories: %v", dirs)
	}
	if m := checkRunDir(t, dirs[0]); m.Machine.Firmware != "uefi" {
		t.Errorf("manifest firmware %q, want uefi", m.Machine.Firmware)
	}
}
