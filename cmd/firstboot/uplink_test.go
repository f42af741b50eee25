package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/internal/simuplink"
	"github.com/firstboot/firstboot/lab/libvirt"
	"github.com/firstboot/firstboot/lab/uplink"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// The real-internet modes, end to end against a simulated uplink
// (internal/simuplink): firstboot runs inside a "host" namespace whose only
// links lead to a namespace playing the ISP and the internet.

// debianUplinkScenario boots Debian 12 to its login, logs in and fetches two
// pages; the simulated internet's HTTPS uses a test CA, hence curl -k.
const debianUplinkScenario = `name: debian-12-uplink
image: {builtin: debian-12}
machine: {cpus: 1, memory: 1GiB}
capture: {window: 20m}
first_party: [debian.org]
steps:
  - name: first-boot
    actions:
      - start
      - console_expect: {pattern: "debian login: ", timeout: 12m}
  - name: login
    actions:
      - console_send: root
      - console_expect: {pattern: "Password: ", timeout: 2m}
      - console_send: firstboot
      - console_expect: {pattern: "root@debian:~# ", timeout: 2m}
  - name: user-action
    actions:
      - console_send: "curl -sS http://example.com/; echo FB-DONE-$?"
      - console_expect: {pattern: "FB-DONE-[0-9]+", timeout: 2m}
      - console_send: "curl -ksSI https://www.debian.org/; echo FB-DONE-$?"
      - console_expect: {pattern: "FB-DONE-[0-9]+", timeout: 2m}
  - name: shutdown
    actions:
      - shutdown: {timeout: 3m}
`

// uplinkRun is one `firstboot run` in the simulated uplink's host namespace.
type uplinkRun struct {
	label    string
	scenario string
	args     []string
	runs     string // its own runs directory
	out      string
	code     int
	dir      string
	m        *manifest.Manifest
}

func (r *uplinkRun) debian() bool { return strings.Contains(r.scenario, "debian") }

// runIn runs the built firstboot inside namespace ns, as `ip netns exec` does
// for a user.
func (e *e2eEnv) runIn(t *testing.T, ns string, args ...string) (string, int) {
	t.Helper()
	args = append(args, "--state-dir", e.state, "--image-cache", e.cache, "--accel", "tcg")
	return runBinary(t, "ip", "", append([]string{"netns", "exec", ns, e.bin}, args...)...)
}

// startIn starts the built firstboot inside namespace ns; `ip netns exec`
// execs it in place, so signals reach firstboot itself.
func (e *e2eEnv) startIn(t *testing.T, ns string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	args = append(args, "--state-dir", e.state, "--image-cache", e.cache, "--accel", "tcg")
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, e.bin}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &out
}

// runAll runs every run at once and reads their run directories.
func (e *e2eEnv) runAll(t *testing.T, u *simuplink.Uplink, runs []*uplinkRun) {
	t.Helper()
	var wg sync.WaitGroup
	for _, r := range runs {
		r.runs = t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.out, r.code = e.runIn(t, u.Host.Name, append([]string{"run", r.scenario, "--runs-dir", r.runs}, r.args...)...)
		}()
	}
	wg.Wait()
	for _, r := range runs {
		dirs, _ := filepath.Glob(filepath.Join(r.runs, "*"))
		if len(dirs) != 1 {
			t.Fatalf("%s: run directories %v\n%s", r.label, dirs, r.out)
		}
		r.dir = dirs[0]
		m, err := manifest.Read(r.dir)
		if err != nil {
			t.Fatalf("%s: %v\n%s", r.label, err, r.out)
		}
		r.m = m
	}
}

// TestUplinkModes runs the test guest and Debian 12 in routed and bridged mode
// (bridged with firstboot's own libvirtd and with the host's), all at once,
// two test guests per own-daemon mode side by side, and checks each run's
// capture, manifest and analysis against what the simulated uplink saw,
// then that nothing was left behind.
func TestUplinkModes(t *testing.T) {
	e := newE2E(t)
	if out, code := e.run(t, "", "image", "build", "debian-12"); code != 0 {
		t.Fatalf("image build debian-12: exit %d\n%s", code, out)
	}
	u := simuplink.New(t)
	u.CheckConfined(t, libvirt.DefaultNetns)
	if out, code := e.run(t, "", "lab", "up"); code != 0 {
		t.Fatalf("lab up: exit %d\n%s", code, out)
	}
	t.Cleanup(func() { e.run(t, "", "lab", "down") })
	hostLibvirtd := u.HostLibvirtd(t)

	guest, err := filepath.Abs("../../scenarios/testguest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	debian := filepath.Join(t.TempDir(), "debian-12-uplink.yaml")
	if err := os.WriteFile(debian, []byte(debianUplinkScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	routed := []string{"--network", "routed"}
	bridged := []string{"--network", "bridged", "--bridge", simuplink.Bridge}
	runs := []*uplinkRun{
		{label: "testguest-routed-1", scenario: guest, args: routed},
		{label: "testguest-routed-2", scenario: guest, args: routed},
		{label: "testguest-bridged-1", scenario: guest, args: bridged},
		{label: "testguest-bridged-2", scenario: guest, args: bridged},
		{label: "testguest-bridged-host-libvirtd", scenario: guest, args: append([]string{"--libvirt-uri", hostLibvirtd}, bridged...)},
		{label: "debian-routed", scenario: debian, args: routed},
		{label: "debian-bridged", scenario: debian, args: bridged},
	}
	// While the runs go on, the host namespace's links still lead nowhere
	// but the uplink and the lab.
	confined := make(chan struct{})
	go func() {
		defer close(confined)
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			if out, _ := exec.Command("ip", "-n", u.Host.Name, "link", "show", "type", "veth").Output(); bytes.Count(out, []byte(": fbu")) >= 3 {
				u.CheckConfined(t, libvirt.DefaultNetns)
				return
			}
		}
	}()
	start := time.Now()
	e.runAll(t, u, runs)
	<-confined
	t.Logf("%d runs in parallel took %s", len(runs), time.Since(start).Round(time.Second))
	for _, r := range runs {
		if r.code != 0 {
			t.Errorf("%s: exit %d\n%s", r.label, r.code, r.out)
		}
	}
	// Each run's checks read only its own directory: side by side (tshark
	// is most of their time).
	t.Run("runs", func(t *testing.T) {
		for _, r := range runs {
			t.Run(r.label, func(t *testing.T) {
				t.Parallel()
				checkUplinkRun(t, r)
			})
		}
	})
	t.Run("side by side", func(t *testing.T) {
		for _, pair := range [][2]*uplinkRun{{runs[0], runs[1]}, {runs[2], runs[3]}} {
			a, b := pair[0], pair[1]
			if a.m.Machine.MAC == b.m.Machine.MAC || a.m.Machine.IP == b.m.Machine.IP {
				t.Errorf("%s and %s share a machine address: %s %s", a.label, b.label, a.m.Machine.MAC, a.m.Machine.IP)
			}
			if a.m.Network.Uplink == nil || b.m.Network.Uplink == nil || a.m.Network.Uplink.Link == b.m.Network.Uplink.Link {
				t.Errorf("%s and %s share a veth", a.label, b.label)
			}
			if a.m.Network.Subnet == b.m.Network.Subnet && a.m.Network.Mode == "routed" {
				t.Errorf("%s and %s share subnet %s", a.label, b.label, a.m.Network.Subnet)
			}
			// Each capture holds its own machine only (checkUplinkRun checks
			// every frame is from or to it); the other's never appears.
			for _, x := range [][2]*uplinkRun{{a, b}, {b, a}} {
				if n := tsharkCount(t, x[0].dir, "eth.addr == "+x[1].m.Machine.MAC+" || ip.addr == "+x[1].m.Machine.IP); n != 0 {
					t.Errorf("%s's capture holds %d frames of %s's machine", x[0].label, n, x[1].label)
				}
			}
		}
	})
	t.Run("nothing else reached", func(t *testing.T) { checkUplinkCounts(t, u, runs) })
	t.Run("teardown", func(t *testing.T) {
		u.CheckClean(t)
		checkLabClean(t, runs, hostLibvirtd)
	})
	if t.Failed() {
		u.Log(t)
		e.logDaemonLogs(t)
		keepRuns(t, runs)
	}
}

// keepRuns copies the run directories of a failed test to
// $FIRSTBOOT_TEST_ARTIFACTS, when set, for a look afterwards.
func keepRuns(t *testing.T, runs []*uplinkRun) {
	dst := os.Getenv("FIRSTBOOT_TEST_ARTIFACTS")
	if dst == "" {
		return
	}
	for _, r := range runs {
		if r.dir == "" {
			continue
		}
		to := filepath.Join(dst, t.Name(), r.label)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err == nil {
			if out, err := exec.Command("cp", "-a", r.dir, to).CombinedOutput(); err != nil {
				t.Logf("keeping %s: %v %s", r.dir, err, out)
			}
		}
	}
	t.Logf("run directories kept in %s", filepath.Join(dst, t.Name()))
}

// checkUplinkRun checks one run: complete, its first packet and DHCP its
// machine's, steps marked, nothing in the capture but its machine's traffic,
// answers from the simulated uplink (not firstboot's responders), the
// expected destinations in the right steps, and the manifest's uplink.
func checkUplinkRun(t *testing.T, r *uplinkRun) {
	m := r.m
	if m.Status != manifest.StatusComplete || m.Capture.Drops != 0 || m.Capture.Packets == 0 {
		t.Fatalf("status %s (%s), %d packets, %d drops", m.Status, m.Reason, m.Capture.Packets, m.Capture.Drops)
	}
	mode := "routed"
	if strings.Contains(strings.Join(r.args, " "), "bridged") {
		mode = "bridged"
	}
	if m.Network.Mode != mode {
		t.Errorf("manifest network mode %q, want %q", m.Network.Mode, mode)
	}
	checkUplinkManifest(t, m, mode)
	if _, err := os.Stat(filepath.Join(r.dir, "responders.jsonl")); err == nil {
		t.Error("firstboot's responders ran in a real-internet run")
	}
	// The capture: the machine's first packet and DHCP exchange, the steps.
	if first := tsharkFields(t, r.dir, "", "-c", "1", "-e", "eth.src"); len(first) == 0 || first[0] != m.Machine.MAC {
		t.Errorf("packet 1 is from %v, want the machine %s", first, m.Machine.MAC)
	}
	if dhcp := tsharkFields(t, r.dir, "dhcp", "-e", "eth.src", "-e", "dhcp.option.dhcp"); len(dhcp) == 0 || dhcp[0] != m.Machine.MAC+"\t1" {
		t.Errorf("first DHCP message %v, want the machine's DISCOVER", dhcp)
	}
	// The last step's start may have no packet after it (its mark then
	// goes into the closing statistics block, which tshark does not show).
	comments := strings.Join(tsharkFields(t, r.dir, "frame.comment", "-e", "frame.comment"), "\n")
	steps := m.Steps()
	for _, s := range steps[:len(steps)-1] {
		if !strings.Contains(comments, `step "`+s.Name+`" start`) {
			t.Errorf("no capture comment marks step %s", s.Name)
		}
	}
	// Nothing but the machine's own traffic: every frame is from it, to it,
	// or a DHCP server's or a router's broadcast (LAN life in bridged mode;
	// other runs' machines on the host bridge are isolated from it).
	strays := tsharkFields(t, r.dir, "eth.src != "+m.Machine.MAC+" && eth.dst != "+m.Machine.MAC+
		" && !(udp.srcport == 67) && !(arp.opcode == 1 && eth.dst == ff:ff:ff:ff:ff:ff)",
		"-e", "frame.number", "-e", "_ws.col.Info")
	if len(strays) > 0 {
		t.Errorf("frames neither from nor to the machine: %q", strays)
	}
	// Answers from the simulated internet: its resolver's addresses, its web
	// server's header and certificate, never the responders' 198.18.0.0/15.
	names := simuplink.Names()
	for _, line := range tsharkFields(t, r.dir, "dns.flags.response == 1 && dns.a", "-e", "dns.qry.name", "-e", "dns.a") {
		name, addrs, _ := strings.Cut(line, "\t")
		for _, a := range strings.Split(addrs, ",") {
			if want, ok := names[name]; !ok || a != want.String() {
				t.Errorf("DNS answer %s → %s, want the simulated uplink's %v", name, a, want)
			}
		}
	}
	if n := tsharkCount(t, r.dir, "ip.addr == 198.18.0.0/15"); n != 0 {
		t.Errorf("%d frames to or from firstboot's simulated-mode address pool", n)
	}
	if r.debian() {
		checkDebianAnswers(t, r)
	} else {
		checkGuestAnswers(t, r)
	}
	if mode == "routed" {
		checkDNSLog(t, r)
	}
}

// checkUplinkManifest checks what the manifest says about the uplink.
func checkUplinkManifest(t *testing.T, m *manifest.Manifest, mode string) {
	t.Helper()
	up := m.Network.Uplink
	if up == nil {
		t.Fatal("manifest has no network.uplink")
	}
	want := manifest.Uplink{Interface: simuplink.Bridge, Router: simuplink.LANRouter.Addr().String(),
		DHCPServer: simuplink.LANRouter.Addr().String(), EgressAddr: m.Machine.IP}
	if mode == "routed" {
		subnet, err := netip.ParsePrefix(m.Network.Subnet)
		if err != nil {
			t.Fatalf("routed run without a subnet: %v", err)
		}
		host := simuplink.HostAddr.Addr().String()
		want = manifest.Uplink{Interface: simuplink.Egress, Router: subnet.Addr().Next().Next().String(),
			Gateway: simuplink.ISPGateway.String(), EgressAddr: host, PublicAddr: host, DHCPServer: m.Network.Gateway,
			Resolvers: []string{simuplink.DNS.String() + ":53"}, DNSLog: "uplink-dns.jsonl"}
		if !subnet.Contains(netip.MustParseAddr(m.Machine.IP)) {
			t.Errorf("machine address %s outside the lab subnet %s", m.Machine.IP, subnet)
		}
	}
	got := *up
	got.Link, got.Events = "", nil
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("manifest uplink\n got %s\nwant %s", gj, wj)
	}
	libvirtdOwnsTaps := up.Link == ""
	if libvirtdOwnsTaps != (m.Network.Bridge == simuplink.Bridge) {
		t.Errorf("uplink link %q with lab bridge %q: a veth exactly when the taps are not on the host bridge", up.Link, m.Network.Bridge)
	}
	if len(up.Events) != 0 {
		t.Errorf("uplink events in an undisturbed run: %+v", up.Events)
	}
}

// checkGuestAnswers: the test guest's web traffic reached the simulated
// uplink and was answered by it, in the steps that asked.
func checkGuestAnswers(t *testing.T, r *uplinkRun) {
	t.Helper()
	if n := tsharkCount(t, r.dir, "http.response && !(http.response.line contains \"X-Simulated-Uplink\")"); n != 0 {
		t.Errorf("%d HTTP answers not from the simulated uplink", n)
	}
	if n := tsharkCount(t, r.dir, "http.response.code == 200 && http.response.line contains \"X-Simulated-Uplink\""); n == 0 {
		t.Error("no HTTP answer from the simulated uplink")
	}
	if n := tsharkCount(t, r.dir, "x509sat.printableString == \""+simuplink.CAName+"\""); n == 0 {
		t.Error("no TLS certificate from the simulated uplink's CA in the capture")
	}
	console, _ := os.ReadFile(filepath.Join(r.dir, "console.log"))
	for _, want := range []string{"action browse 1 https ok host=news.example.com", "action update 1 http ok url=http://updates.firstboot.test/check status=200"} {
		if !bytes.Contains(console, []byte(want)) {
			t.Errorf("console lacks %q", want)
		}
	}
	checkStepDestinations(t, r.dir, map[string][]string{
		"first-boot": {"connectivity.firstboot.test", "updates.firstboot.test"},
		"browse":     {"news.example.com"},
		"update":     {"updates.firstboot.test"},
	}, "news.example.com", "browse")
}

// checkDebianAnswers: Debian's curl got the simulated uplink's pages.
func checkDebianAnswers(t *testing.T, r *uplinkRun) {
	t.Helper()
	console, _ := os.ReadFile(filepath.Join(r.dir, "console.log"))
	console = ansi.ReplaceAll(console, nil) // curl shows header names in bold
	for _, want := range []string{simuplink.BodyMarker + "example.com/", "X-Simulated-Uplink: 1", "FB-DONE-0"} {
		if !bytes.Contains(console, []byte(want)) {
			t.Errorf("console lacks %q", want)
		}
	}
	checkStepDestinations(t, r.dir, map[string][]string{"user-action": {"example.com", "www.debian.org"}}, "www.debian.org", "user-action")
}

// ansi matches terminal escape sequences.
var ansi = regexp.MustCompile("\x1b\\[[0-9;?]*[A-Za-z]")

// checkStepDestinations checks the analysis puts each name in its step, and
// only is only in step only.
func checkStepDestinations(t *testing.T, dir string, want map[string][]string, only, onlyStep string) {
	t.Helper()
	var a schema.Analysis
	data, err := os.ReadFile(filepath.Join(dir, "analysis.json"))
	if err != nil || json.Unmarshal(data, &a) != nil {
		t.Fatalf("analysis.json unreadable: %v", err)
	}
	steps := map[string]map[string]bool{}
	for _, sv := range a.Steps {
		steps[sv.Name] = map[string]bool{}
		for _, d := range sv.Destinations {
			steps[sv.Name][d.Name] = true
		}
	}
	for step, names := range want {
		for _, n := range names {
			if !steps[step][n] {
				t.Errorf("step %s lacks destination %s; has %v", step, n, keys(steps[step]))
			}
		}
	}
	for step, names := range steps {
		if step != onlyStep && names[only] {
			t.Errorf("%s leaked into step %s", only, step)
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkDNSLog: routed mode's forwarder logged every query, each answered by
// the host namespace's resolver (the simulated ISP's).
func checkDNSLog(t *testing.T, r *uplinkRun) {
	t.Helper()
	recs := readDNSLog(t, r.dir)
	if len(recs) == 0 {
		t.Fatal("uplink-dns.jsonl is empty")
	}
	for _, rec := range recs {
		if rec.Upstream != simuplink.DNS.String()+":53" || rec.Error != "" {
			t.Errorf("query %s %s: upstream %q error %q", rec.Name, rec.QType, rec.Upstream, rec.Error)
		}
		if !strings.HasPrefix(rec.Client, r.m.Machine.IP+":") {
			t.Errorf("query from %s, not the machine %s", rec.Client, r.m.Machine.IP)
		}
	}
	// The capture's queries to the lab are the log's.
	if n := tsharkCount(t, r.dir, "dns.flags.response == 0 && ip.dst == "+r.m.Network.Gateway); n != len(recs) {
		t.Errorf("capture has %d queries to the forwarder, its log %d", n, len(recs))
	}
}

func readDNSLog(t *testing.T, dir string) []uplink.DNSRecord {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "uplink-dns.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []uplink.DNSRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec uplink.DNSRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("uplink-dns.jsonl: %v", err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// checkUplinkCounts checks by counting that the machines reached nothing but
// the simulated uplink: every IPv4 packet a routed machine sent beyond its
// lab arrived at the ISP's routed link, every one a bridged machine sent at
// its bridged link, kind by kind; each DNS query the forwarders logged
// arrived once; and nothing arrived that the ISP does not serve.
func checkUplinkCounts(t *testing.T, u *simuplink.Uplink, runs []*uplinkRun) {
	routedSent, bridgedSent := map[string]int{}, map[string]int{}
	forwarded := 0
	for _, r := range runs {
		from := "eth.src == " + r.m.Machine.MAC + " && ip"
		sent := bridgedSent
		if r.m.Network.Mode == "routed" {
			from += " && !(ip.dst == " + r.m.Network.Subnet + ") && ip.dst != 255.255.255.255 && !(ip.dst == 224.0.0.0/4)"
			sent = routedSent
			for _, rec := range readDNSLog(t, r.dir) {
				if rec.Proto == "udp" {
					forwarded++
				}
			}
		}
		for class, n := range sentByClass(t, r.dir, from) {
			sent[class] += n
		}
	}
	// The forwarders' queries leave from the host namespace, not from a
	// machine: they are the routed link's DNS.
	routedSent["dns"] += forwarded
	for _, link := range []struct {
		l    simuplink.Link
		sent map[string]int
	}{{simuplink.Routed, routedSent}, {simuplink.Bridged, bridgedSent}} {
		arrived := u.Counts(t, link.l)
		for class := range arrived {
			if arrived[class] != link.sent[class] && class != "dns-tcp" {
				t.Errorf("%s link, %s: %d packets arrived, the machines sent %d", link.l, class, arrived[class], link.sent[class])
			}
		}
		if arrived["other"] != 0 {
			t.Errorf("%s link: %d packets to nothing the ISP serves", link.l, arrived["other"])
		}
		t.Logf("%s link: arrived %v, sent %v", link.l, arrived, link.sent)
	}
}

// sentByClass sorts the packets of a capture that match filter by the
// uplink's counters. A TCP frame larger than the links' 1500-byte MTU is the
// guest's segmentation offload at work (a TLS ClientHello with a
// post-quantum key share is one): it reaches the uplink as that many
// MTU-sized packets.
func sentByClass(t *testing.T, dir, filter string) map[string]int {
	t.Helper()
	out := map[string]int{}
	fields := []string{"ip.dst", "ip.proto", "tcp.dstport", "udp.dstport", "ip.len", "ip.hdr_len", "tcp.hdr_len", "tcp.len"}
	var args []string
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	for _, line := range tsharkFields(t, dir, filter, args...) {
		f := strings.Split(line, "\t")
		for len(f) < len(fields) {
			f = append(f, "")
		}
		// ICMP errors quote the packet they answer: the outer values come first.
		v := func(i int) string { s, _, _ := strings.Cut(f[i], ","); return s }
		n := func(i int) int { x, _ := strconv.Atoi(v(i)); return x }
		dst, err := netip.ParseAddr(v(0))
		if err != nil {
			continue
		}
		proto := map[string]string{"1": "icmp", "6": "tcp", "17": "udp"}[v(1)]
		port, packets := n(2), 1
		if proto == "udp" {
			port = n(3)
		}
		if proto == "tcp" && n(4) > 1500 {
			mss := 1500 - n(5) - n(6)
			packets = (n(7) + mss - 1) / mss
		}
		out[simuplink.Classify(dst, proto, uint16(port))] += packets
	}
	return out
}

// checkLabClean checks the lab side of every run is gone: its veth end, its
// libvirt network and domain.
func checkLabClean(t *testing.T, runs []*uplinkRun, hostLibvirtd string) {
	t.Helper()
	out, _ := exec.Command("ip", "-n", libvirt.DefaultNetns, "-br", "link").Output()
	for _, r := range runs {
		if up := r.m.Network.Uplink; up != nil && up.Link != "" {
			labSide := strings.TrimSuffix(up.Link, "h") + "l"
			if bytes.Contains(out, []byte(labSide)) {
				t.Errorf("%s: its veth %s is left in the lab namespace", r.label, labSide)
			}
		}
		uri := "qemu:///system"
		if slices.Contains(r.args, hostLibvirtd) {
			uri = hostLibvirtd
		}
		for what, name := range map[string]string{"net-info": r.m.Network.Name, "dominfo": r.m.Machine.Name} {
			if err := exec.Command("virsh", "-c", uri, what, name).Run(); err == nil {
				t.Errorf("%s: libvirt still has %s (%s)", r.label, name, what)
			}
		}
	}
}

// tsharkFields runs tshark with a display filter and fields over a run's
// capture and returns its non-empty lines.
func tsharkFields(t *testing.T, dir, filter string, args ...string) []string {
	t.Helper()
	a := []string{"-r", filepath.Join(dir, "capture.pcapng"), "-n", "-T", "fields"}
	if filter != "" {
		a = append(a, "-Y", filter)
	}
	out, err := exec.Command("tshark", append(a, args...)...).Output()
	if err != nil {
		t.Fatalf("tshark %v: %v", args, err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func tsharkCount(t *testing.T, dir, filter string) int {
	t.Helper()
	return len(tsharkFields(t, dir, filter, "-e", "frame.number"))
}

// guestScenario is a test-guest scenario: boot to the agent's ready marker,
// then the steps given (YAML list items), then shut down.
func guestScenario(name, window, steps string) string {
	return `name: ` + name + `
image: {builtin: testguest}
machine: {memory: 256MiB}
capture: {window: ` + window + `}
steps:
  - name: first-boot
    actions:
      - start
      - console_expect: {pattern: "FIRSTBOOT-GUEST ready", timeout: 3m}
` + steps + `  - name: shutdown
    actions:
      - shutdown: {timeout: 30s}
`
}

// lostScenario idles while the test pulls the uplink's cable and puts it
// back, then fetches a page.
var lostScenario = guestScenario("uplink-lost", "6m", `  - name: offline
    actions:
      - wait: 15s
  - name: back
    actions:
      - console_send: "fbguest run back http http://connectivity.firstboot.test/back"
      - console_expect: {pattern: "FIRSTBOOT-GUEST done back", timeout: 90s}
`)

// downloadBytes is what the line-rate run fetches at full speed.
const downloadBytes = 200 << 20

// downloadScenario fetches a large file from the simulated uplink as fast as
// the link and the guest go.
var downloadScenario = guestScenario("uplink-download", "10m", `  - name: download
    actions:
      - guest_exec: {path: /bin/sh, args: [-c, "busybox wget -q -O /dev/null 'http://`+simuplink.WWW.String()+simuplink.LargePath+`?bytes=`+strconv.Itoa(downloadBytes)+`' && echo downloaded"], timeout: 8m}
`)

// TestUplinkFailures: an uplink that is down at the start stops a run with a
// clear error before any machine starts; one lost mid-run is noted in the
// manifest and the capture while the run goes on; Ctrl-C ends a routed run
// as in simulated mode, with everything torn down. Beside them a routed run
// downloads a large file at full speed and its capture drops nothing.
func TestUplinkFailures(t *testing.T) {
	e := newE2E(t)
	u := simuplink.New(t)
	if out, code := e.run(t, "", "lab", "up"); code != 0 {
		t.Fatalf("lab up: exit %d\n%s", code, out)
	}
	t.Cleanup(func() { e.run(t, "", "lab", "down") })
	guest, err := filepath.Abs("../../scenarios/testguest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	routed := []string{"--network", "routed"}
	bridged := []string{"--network", "bridged", "--bridge", simuplink.Bridge}

	t.Run("uplink down at start", func(t *testing.T) {
		for _, c := range []struct {
			mode string
			link simuplink.Link
			args []string
			want string
		}{
			{"routed", simuplink.Routed, routed, "egress interface " + simuplink.Egress + " has no carrier"},
			{"bridged", simuplink.Bridged, bridged, "no carrier on its uplink ports (" + simuplink.Port + ")"},
		} {
			t.Run(c.mode, func(t *testing.T) {
				runs := t.TempDir()
				u.SetLink(t, c.link, false)
				out, code := e.runIn(t, u.Host.Name, append([]string{"run", guest, "--runs-dir", runs}, c.args...)...)
				u.SetLink(t, c.link, true)
				if code != exitError || !strings.Contains(out, "uplink down") || !strings.Contains(out, c.want) {
					t.Errorf("exit %d, want %d with an error saying %q\n%s", code, exitError, c.want, out)
				}
				dirs, _ := filepath.Glob(filepath.Join(runs, "*"))
				if len(dirs) != 1 {
					t.Fatalf("run directories %v", dirs)
				}
				m, err := manifest.Read(dirs[0])
				if err != nil {
					t.Fatal(err)
				}
				if m.Status != manifest.StatusIncomplete || !strings.Contains(m.Reason, c.want) {
					t.Errorf("manifest %s: %q, want incomplete saying %q", m.Status, m.Reason, c.want)
				}
				for _, en := range m.Timeline {
					if en.Name == "machine" || en.Name == "capture" {
						t.Errorf("the run got as far as %q with its uplink down", en.Name)
					}
				}
				u.CheckClean(t)
			})
		}
	})

	lost := filepath.Join(t.TempDir(), "lost.yaml")
	long := filepath.Join(t.TempDir(), "long.yaml")
	download := filepath.Join(t.TempDir(), "download.yaml")
	for f, text := range map[string]string{lost: lostScenario, long: longScenario, download: downloadScenario} {
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The mid-run failures and the download, side by side.
	type bg struct {
		label string
		link  simuplink.Link
		cmd   *exec.Cmd
		out   *bytes.Buffer
		runs  string
		err   error
	}
	runs := []*bg{
		{label: "lost-routed", link: simuplink.Routed},
		{label: "lost-bridged", link: simuplink.Bridged},
		{label: "interrupted"},
		{label: "download"},
	}
	// The download has an uplink of its own: the others pull cables.
	u2 := simuplink.New(t)
	var wg sync.WaitGroup
	for _, r := range runs {
		r.runs = t.TempDir()
		scenario, args, host := lost, routed, u.Host.Name
		switch r.label {
		case "lost-bridged":
			args = bridged
		case "interrupted":
			scenario = long
		case "download":
			scenario, host = download, u2.Host.Name
		}
		r.cmd, r.out = e.startIn(t, host, append([]string{"run", scenario, "--runs-dir", r.runs, "--no-analyze"}, args...)...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch r.label {
			case "interrupted":
				// Ctrl-C once the guest is up.
				if waitRunDir(r.runs, "console.log", "FIRSTBOOT-GUEST ready", 5*time.Minute) {
					r.cmd.Process.Signal(os.Interrupt)
				}
			case "lost-routed", "lost-bridged":
				// Pull the cable for a few seconds while the run idles.
				if waitStepDone(r.runs, "first-boot", 5*time.Minute) {
					u.SetLink(t, r.link, false)
					time.Sleep(5 * time.Second)
					u.SetLink(t, r.link, true)
				}
			}
			r.err = r.cmd.Wait()
		}()
	}
	wg.Wait()
	dirOf := func(r *bg) string {
		dirs, _ := filepath.Glob(filepath.Join(r.runs, "*"))
		if len(dirs) != 1 {
			t.Fatalf("%s: run directories %v\n%s", r.label, dirs, r.out)
		}
		return dirs[0]
	}
	for _, r := range runs[:2] {
		t.Run("uplink lost mid-run/"+r.label, func(t *testing.T) {
			if code := exitCodeOf(r.err); code != 0 {
				t.Errorf("exit %d, want the run to go on to the end\n%s", code, r.out)
			}
			checkLost(t, dirOf(r))
		})
	}
	t.Run("interrupted", func(t *testing.T) {
		r := runs[2]
		if code := exitCodeOf(r.err); code != exitInterrupted {
			t.Errorf("exit %d, want %d\n%s", code, exitInterrupted, r.out)
		}
		dir := dirOf(r)
		m := mustManifest(t, dir)
		if m.Status != manifest.StatusIncomplete || !strings.HasPrefix(m.Reason, "interrupted") {
			t.Errorf("manifest %s %q, want incomplete, interrupted", m.Status, m.Reason)
		}
		if dhcp := tsharkFields(t, dir, "dhcp", "-e", "eth.src", "-e", "dhcp.option.dhcp"); len(dhcp) == 0 || dhcp[0] != m.Machine.MAC+"\t1" {
			t.Errorf("the capture so far does not hold the machine's DHCP DISCOVER: %v", dhcp)
		}
		checkLabClean(t, []*uplinkRun{{label: r.label, m: m}}, "")
	})
	t.Run("download at full speed drops nothing", func(t *testing.T) {
		r := runs[3]
		if code := exitCodeOf(r.err); code != 0 {
			t.Fatalf("exit %d\n%s", code, r.out)
		}
		checkDownload(t, dirOf(r))
	})
	t.Run("teardown", func(t *testing.T) { u.CheckClean(t); u2.CheckClean(t) })
	if t.Failed() {
		u.Log(t)
	}
}

// waitRunDir waits until the run directory's file contains want.
func waitRunDir(runs, file, want string, timeout time.Duration) bool {
	return poll(timeout, func() bool {
		files, _ := filepath.Glob(filepath.Join(runs, "*", file))
		return slices.ContainsFunc(files, func(f string) bool {
			b, _ := os.ReadFile(f)
			return bytes.Contains(b, []byte(want))
		})
	})
}

// waitStepDone waits until the run's manifest shows step done.
func waitStepDone(runs, step string, timeout time.Duration) bool {
	return poll(timeout, func() bool {
		dirs, _ := filepath.Glob(filepath.Join(runs, "*"))
		return slices.ContainsFunc(dirs, func(d string) bool {
			m, err := manifest.Read(d)
			return err == nil && slices.ContainsFunc(m.Steps(), func(s manifest.Step) bool { return s.Name == step })
		})
	})
}

// poll checks cond until it holds or timeout passes (usable off the test goroutine).
func poll(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

func mustManifest(t *testing.T, dir string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkLost: the run completed; the manifest and the capture say when the
// uplink went and came back, inside the step that idled; the step after it
// reached the simulated uplink again.
func checkLost(t *testing.T, dir string) {
	t.Helper()
	m := mustManifest(t, dir)
	if m.Status != manifest.StatusComplete {
		t.Errorf("status %s (%s), want complete", m.Status, m.Reason)
	}
	if m.Network.Uplink == nil {
		t.Fatal("no uplink in the manifest")
	}
	ev := m.Network.Uplink.Events
	if len(ev) != 2 || ev[0].State != "lost" || ev[1].State != "restored" || !ev[0].Time.Before(ev[1].Time) {
		t.Fatalf("uplink events %+v, want lost then restored", ev)
	}
	if !strings.Contains(ev[0].Detail, "carrier") {
		t.Errorf("lost event says %q, want the missing carrier named", ev[0].Detail)
	}
	for _, s := range m.Steps() {
		if s.Name == "offline" && (ev[0].Time.Before(s.Start) || ev[1].Time.After(s.End)) {
			t.Errorf("uplink events at %s and %s, outside the offline step %s–%s", ev[0].Time, ev[1].Time, s.Start, s.End)
		}
	}
	comments := strings.Join(tsharkFields(t, dir, "frame.comment", "-e", "frame.comment"), "\n")
	for _, want := range []string{"uplink lost", "uplink restored"} {
		if !strings.Contains(comments, want) {
			t.Errorf("no capture comment says %q", want)
		}
	}
	console, _ := os.ReadFile(filepath.Join(dir, "console.log"))
	if !bytes.Contains(console, []byte("action back 1 http ok url=http://connectivity.firstboot.test/back status=200")) {
		t.Error("the step after the outage did not reach the simulated uplink")
	}
}

// checkDownload: the whole file went through the capture without a drop.
func checkDownload(t *testing.T, dir string) {
	t.Helper()
	m := mustManifest(t, dir)
	if m.Status != manifest.StatusComplete {
		t.Fatalf("status %s (%s)", m.Status, m.Reason)
	}
	out, _ := filepath.Glob(filepath.Join(dir, "guest-exec", "download-*.out"))
	if len(out) != 1 {
		t.Fatalf("guest-exec output %v", out)
	}
	if b, _ := os.ReadFile(out[0]); !bytes.Contains(b, []byte("downloaded")) {
		t.Fatalf("the download did not complete: %s", b)
	}
	var dl manifest.Step
	for _, s := range m.Steps() {
		if s.Name == "download" {
			dl = s
		}
	}
	secs := dl.End.Sub(dl.Start).Seconds()
	t.Logf("download: %d MiB in %.1f s (%.0f Mbit/s) through the capture: %d packets, %d dropped",
		downloadBytes>>20, secs, float64(downloadBytes)*8/secs/1e6, m.Capture.Packets, m.Capture.Drops)
	if m.Capture.Drops != 0 {
		t.Errorf("the capture dropped %d packets", m.Capture.Drops)
	}
	// The capture holds every byte of the file, as the machine received it
	// (read with gopacket: tshark takes minutes over a capture this size).
	got := tcpPayloadFrom(t, filepath.Join(dir, "capture.pcapng"), netip.AddrPortFrom(simuplink.WWW, 80))
	if got < downloadBytes {
		t.Errorf("the capture holds %d bytes from the web server, want at least the file's %d", got, downloadBytes)
	}
}

// tcpPayloadFrom sums the TCP payload a capture holds from src.
func tcpPayloadFrom(t *testing.T, path string, src netip.AddrPort) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var eth layers.Ethernet
	var ip4 layers.IPv4
	var tcp layers.TCP
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &tcp)
	parser.IgnoreUnsupported = true
	var decoded []gopacket.LayerType
	total := 0
	for {
		data, _, err := r.ZeroCopyReadPacketData()
		if err != nil {
			break
		}
		if parser.DecodeLayers(data, &decoded) != nil || len(decoded) < 3 {
			continue
		}
		if a, _ := netip.AddrFromSlice(ip4.SrcIP.To4()); a == src.Addr() && uint16(tcp.SrcPort) == src.Port() {
			total += len(tcp.Payload)
		}
	}
	return total
}
