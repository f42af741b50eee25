package http

// Test helper: a network namespace with loopback up, a tcpdump capture inside
// it, real clients run inside it, and readers for the resulting pcap (gopacket
// and tshark). The same file is copied into each protocol package so the
// packages stay independent; a shared internal/testnet will replace it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// needTool skips the test only when a binary is truly absent.
func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed (needed to generate or check real traffic): %v", n, err)
		}
	}
}

type testNetns struct {
	t    *testing.T
	name string
	dir  string
}

// newNetns creates a namespace with a unique name and loopback up; it is
// deleted (with every process still in it killed) in t.Cleanup.
func newNetns(t *testing.T) *testNetns {
	t.Helper()
	needTool(t, "ip")
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	n := &testNetns{t: t, name: "fbt-" + hex.EncodeToString(rnd[:]), dir: t.TempDir()}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s (tests that capture real traffic need root)", n.name, err, out)
	}
	t.Cleanup(func() {
		// Kill whatever is left in the namespace, then remove it.
		if out, err := exec.Command("ip", "netns", "pids", n.name).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	n.mustRun("ip", "link", "set", "lo", "up")
	return n
}

// command returns a command that runs inside the namespace.
func (n *testNetns) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// run runs a command in the namespace with a timeout and returns its combined output.
func (n *testNetns) run(timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.command(ctx, name, args...).CombinedOutput()
}

func (n *testNetns) mustRun(name string, args ...string) []byte {
	n.t.Helper()
	out, err := n.run(30*time.Second, name, args...)
	if err != nil {
		n.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// start starts a long-running command in the namespace; it is killed in
// t.Cleanup. Its output goes to a log file printed if the test fails.
func (n *testNetns) start(name string, args ...string) *exec.Cmd {
	n.t.Helper()
	cmd := n.command(context.Background(), name, args...)
	logPath := filepath.Join(n.dir, fmt.Sprintf("%s-%d.log", filepath.Base(name), time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		n.t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	n.t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if n.t.Failed() {
			b, _ := os.ReadFile(logPath)
			n.t.Logf("output of %s %s:\n%s", name, strings.Join(args, " "), b)
		}
	})
	return cmd
}

// capture runs tcpdump on iface inside the namespace, writing each packet as
// it arrives (-U, and --immediate-mode: without it TPACKET_V3 holds packets
// in blocks and a short capture can end with none written). stop ends it cleanly (SIGINT) and returns the pcap path.
func (n *testNetns) capture(iface string) (stop func() string) {
	n.t.Helper()
	needTool(n.t, "tcpdump")
	path := filepath.Join(n.dir, "capture.pcap")
	cmd := n.command(context.Background(), "tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-s", "0", "-w", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start tcpdump: %v", err)
	}
	ready := make(chan string, 1)
	var errOut bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			errOut.WriteString(line + "\n")
			if strings.Contains(line, "listening on") {
				ready <- line
			}
		}
		close(ready)
	}()
	select {
	case _, ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			n.t.Fatalf("tcpdump ended before capturing: %s", errOut.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		n.t.Fatalf("tcpdump did not start within 10s: %s", errOut.String())
	}
	stopped := false
	stop = func() string {
		if !stopped {
			stopped = true
			time.Sleep(200 * time.Millisecond) // let the last packets reach tcpdump
			_ = cmd.Process.Signal(syscall.SIGINT)
			_ = cmd.Wait()
		}
		return path
	}
	n.t.Cleanup(func() { stop() })
	return stop
}

// frame is one captured packet: its 1-based number (tshark's frame.number)
// and its decoded layers.
type frame struct {
	num int
	pkt gopacket.Packet
}

// readPcap reads a classic pcap written by tcpdump.
func readPcap(t *testing.T, path string) []frame {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var out []frame
	for i := 1; ; i++ {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		out = append(out, frame{num: i, pkt: p})
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no packets", path)
	}
	return out
}

// ipBytes returns the IP header onwards of a frame.
func ipBytes(p gopacket.Packet) []byte {
	if l := p.Layer(layers.LayerTypeIPv4); l != nil {
		return append(l.LayerContents(), l.LayerPayload()...)
	}
	if l := p.Layer(layers.LayerTypeIPv6); l != nil {
		return append(l.LayerContents(), l.LayerPayload()...)
	}
	return nil
}

// tsharkFields runs tshark on path with a display filter and returns, per
// frame number, the requested fields (occurrences joined by ',').
func tsharkFields(t *testing.T, path, filter string, fields ...string) map[int][]string {
	t.Helper()
	needTool(t, "tshark")
	args := []string{"-n", "-r", path, "-Y", filter, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	res := map[int][]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		var num int
		if _, err := fmt.Sscan(cols[0], &num); err != nil {
			t.Fatalf("tshark line %q: %v", line, err)
		}
		for len(cols) < len(fields)+1 {
			cols = append(cols, "")
		}
		res[num] = cols[1:]
	}
	return res
}

// updateCorpus makes the real-traffic tests store the payloads they captured
// as fuzz seeds under testdata/fuzz/<target>.
var updateCorpus = flag.Bool("update-corpus", false, "store captured payloads as fuzz seed corpus in testdata/fuzz")

// saveCorpus writes payloads in the `go test fuzz v1` format when
// -update-corpus is set.
func saveCorpus(t *testing.T, target string, payloads [][]byte) {
	t.Helper()
	if !*updateCorpus {
		return
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range payloads {
		sum := sha256.Sum256(p)
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", p)
		if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:8])), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("stored %d seeds in %s", len(payloads), dir)
}
