package capture

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// childEnv makes the test binary a capturing process that the kill test
// can SIGKILL: "netns,iface,path".
const childEnv = "FIRSTBOOT_CAPTURE_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(captureChild(spec))
	}
	os.Exit(m.Run())
}

// captureChild captures until it is killed.
func captureChild(spec string) int {
	f := strings.Split(spec, ",")
	if len(f) != 3 {
		fmt.Fprintf(os.Stderr, "%s=%q: want netns,iface,path\n", childEnv, spec)
		return 2
	}
	if _, err := Start(context.Background(), Config{Netns: f[0], Iface: f[1], Path: f[2]}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("capturing")
	select {}
}

// A capture killed with SIGKILL under load leaves a file that tshark reads
// to its last block, holding everything up to a moment shortly before the
// kill.
func TestKilledCaptureIsReadable(t *testing.T) {
	ns, peer := testNetns(t)
	path := filepath.Join(t.TempDir(), "c.pcapng")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+ns+",cap0,"+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "capturing\n" {
		t.Fatalf("capturing child: %q, %v", line, err)
	}
	stop := load(t, peer, "k", 50000)
	time.Sleep(time.Second)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	cmd.Wait()
	sent := stop()

	blocks, tail := readBlocks(t, path)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// A write in progress can be cut by the kill, but the kernel stops a
	// write only at a page boundary: anything else means a block was
	// written in pieces.
	if tail != 0 && st.Size()%4096 != 0 {
		t.Errorf("file ends %d bytes into a block, at %d, not on a page boundary", tail, st.Size())
	}
	var packets int
	var last time.Time
	for _, b := range blocks {
		if b.typ == blockEPB {
			packets++
			ts := uint64(binary.LittleEndian.Uint32(b.body[4:]))<<32 | uint64(binary.LittleEndian.Uint32(b.body[8:]))
			last = time.Unix(0, int64(ts))
		}
	}
	all := readDatagramsCut(t, path, tail != 0)
	if len(all) != packets {
		t.Errorf("tshark reads %d packets, the file holds %d whole packet blocks", len(all), packets)
	}
	for _, d := range all {
		if d.payload != "" && !strings.HasPrefix(d.payload, "k-") {
			t.Errorf("frame %d: payload %q", d.frame, d.payload)
		}
	}
	lost := killed.Sub(last)
	t.Logf("sent %d datagrams, %d packets in the file; the last %v before the kill were lost; %d bytes of a cut block", sent, packets, lost.Round(time.Millisecond), tail)
	// The file keeps up with the traffic: batches are written at least every
	// few tens of milliseconds (a generous bound: the machine may be busy).
	if packets == 0 || lost > time.Second {
		t.Errorf("%d packets in the file, the last %v before the kill", packets, lost)
	}
}

// readDatagramsCut is readDatagrams for a file whose last block may be cut:
// tshark then reads every whole block and reports the cut, which is no
// failure here.
func readDatagramsCut(t *testing.T, path string, cut bool) []datagram {
	t.Helper()
	if !cut {
		return readDatagrams(t, path)
	}
	cmd := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.number")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err == nil || !strings.Contains(stderr.String(), "cut short") {
		t.Fatalf("tshark on a file with a cut last block: %v: %s", err, stderr.String())
	}
	n := strings.Count(string(out), "\n")
	// Then the frames' fields from the whole blocks, which tshark reads
	// without complaint.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, tail := readBlocks(t, path)
	whole := filepath.Join(t.TempDir(), "whole.pcapng")
	if err := os.WriteFile(whole, b[:len(b)-tail], 0o644); err != nil {
		t.Fatal(err)
	}
	all := readDatagrams(t, whole)
	if len(all) != n {
		t.Errorf("tshark reads %d frames in the cut file, %d in its whole blocks", n, len(all))
	}
	return all
}
