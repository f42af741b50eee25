package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

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
	agent := filepath.Join(t.TempDir(), "firstboot-guest")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", agent, "github.com/firstboot/firstboot/cmd/firstboot-guest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
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

func (e *e2eEnv) run(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	args = append(args, "--state-dir", e.state, "--image-cache", e.cache, "--accel", "tcg")
	cmd := exec.Command(e.bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
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
	runs := t.TempDir()
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], codes[i] = e.run(t, "", "run", scenario, "--runs-dir", runs)
		}()
	}
	wg.Wait()
	for i := range outs {
		if codes[i] != 0 {
			t.Errorf("run %d: exit %d\n%s", i, codes[i], outs[i])
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(runs, "*-testguest-*"))
	if len(dirs) != 2 {
		t.Fatalf("want 2 run directories, found %v", dirs)
	}
	macs := map[string]bool{}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m := checkRunDir(t, dir)
			macs[m.Machine.MAC] = true
		})
	}
	if len(macs) != 2 {
		t.Errorf("the two runs did not get two machines: %v", macs)
	}
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
	if m.Status != manifest.StatusComplete || m.Capture.Drops != 0 || m.Capture.Packets == 0 {
		t.Errorf("manifest: status %s (%s), %d packets, %d drops", m.Status, m.Reason, m.Capture.Packets, m.Capture.Drops)
	}
	pcap := filepath.Join(dir, "capture.pcapng")
	tshark := func(args ...string) []string {
		out, err := exec.Command("tshark", append([]string{"-r", pcap, "-n"}, args...)...).Output()
		if err != nil {
			t.Fatalf("tshark %v: %v", args, err)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	// Packet 1 is the guest's first DHCP packet: nothing was missed.
	first := tshark("-c", "1", "-T", "fields", "-e", "eth.src", "-e", "dhcp.option.dhcp", "-e", "dhcp.option.hostname")
	if want := m.Machine.MAC + "\t1\tfirstboot-testguest"; first[0] != want {
		t.Errorf("packet 1 = %q, want the guest's DHCP DISCOVER %q", first[0], want)
	}
	if got := len(tshark("-T", "fields", "-e", "frame.number")); uint64(got) != m.Capture.Packets {
		t.Errorf("tshark reads %d packets, manifest says %d", got, m.Capture.Packets)
	}
	for filter, what := range map[string]string{
		"dhcp.option.dhcp == 3 && dhcp.option.vendor_class_id == \"firstboot-testguest/1\"": "DHCP REQUEST with vendor class",
		"dns.flags.response == 0 && dns.qry.name == \"time.firstboot.test\"":                "DNS query",
		"ntp.flags.mode == 3":                                          "NTP client request",
		"http.request.uri == \"/generate_204\"":                        "HTTP connectivity check",
		"tls.handshake.extensions_server_name == \"news.example.com\"": "TLS ClientHello with SNI (browse step)",
		"http.host == \"updates.firstboot.test\"":                      "HTTP request (update step)",
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
		{"browse", "news.example.com"},
		{"update", "updates.firstboot.test"},
	} {
		if !has(c.step, c.name) {
			names := steps[c.step]
			sort.Strings(names)
			t.Errorf("step %s lacks destination %s; has %v", c.step, c.name, names)
		}
	}
	if has("first-boot", "news.example.com") || has("update", "news.example.com") {
		t.Errorf("news.example.com leaked out of the browse step")
	}
	return m
}
