package capture

import (
	"context"
	"encoding/binary"
	"fmt"
	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/testnet"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firstboot/firstboot/lab/netns"
)

// testNetns makes two namespaces joined by a veth pair cap0<->peer0 (IPv6
// off, no routes out): the capture listens on cap0, the test sends from the
// peer namespace. It returns the capture side's namespace and the peer's.
func testNetns(t *testing.T) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root for namespaces and AF_PACKET")
	}
	ctx := context.Background()
	name, peer := fmt.Sprintf("fbcap-%d", os.Getpid()), fmt.Sprintf("fbcapp-%d", os.Getpid())
	for _, n := range []string{name, peer} {
		if err := netns.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netns.Delete(context.Background(), n) })
	}
	for _, c := range []struct {
		ns   string
		argv []string
	}{
		{name, []string{"ip", "link", "add", "cap0", "type", "veth", "peer", "name", "peer0", "netns", peer}},
		{name, []string{"ip", "addr", "add", "10.99.0.1/24", "dev", "cap0"}},
		{peer, []string{"ip", "addr", "add", "10.99.0.2/24", "dev", "peer0"}},
		{name, []string{"ip", "link", "set", "cap0", "up"}},
		{peer, []string{"ip", "link", "set", "peer0", "up"}},
	} {
		if _, err := netns.Exec(ctx, c.ns, c.argv...); err != nil {
			t.Fatal(err)
		}
	}
	return name, peer
}

// sendUDP sends n datagrams from the peer namespace to cap0's address.
func sendUDP(t *testing.T, ns string, n int, tag string) {
	t.Helper()
	err := netns.Do(ns, func() error {
		// Unconnected, so the ICMP port-unreachable answers are not errors.
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2)})
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1), Port: 9}
		for i := 0; i < n; i++ {
			if _, err := c.WriteToUDP([]byte(fmt.Sprintf("%s-%d", tag, i)), to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func tshark(t *testing.T, path string, fields ...string) []string {
	t.Helper()
	args := []string{"-r", path, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	s := strings.TrimSpace(testnet.Tshark(t, args...))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestCaptureMarksAndStats(t *testing.T) {
	ns, peer := testNetns(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.pcapng")
	before := time.Now()
	var seen atomic.Int64
	c, err := Start(ctx, Config{Netns: ns, Iface: "cap0", Path: path, SectionComment: "firstboot test", InterfaceName: "machine-a",
		OnPacket: func(data []byte, at time.Time) {
			if len(data) >= 14 && !at.IsZero() {
				seen.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	c.Mark("step one start")
	// ARP resolution comes first; the datagrams follow.
	sendUDP(t, peer, 3, "one")
	time.Sleep(300 * time.Millisecond)
	c.Mark("step two start")
	sendUDP(t, peer, 2, "two")
	time.Sleep(300 * time.Millisecond)
	c.Mark("step end")
	// A file that is still being written is readable (flushed per packet).
	if rows := tshark(t, path, "frame.number"); len(rows) == 0 {
		t.Error("running capture not readable yet")
	}
	st, err := c.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := seen.Load(); uint64(got) != st.Packets {
		t.Errorf("OnPacket saw %d packets, %d written", got, st.Packets)
	}
	if st.Drops != 0 {
		t.Errorf("drops = %d", st.Drops)
	}
	if st.First.Before(before) || st.Last.Before(st.First) || st.Last.After(time.Now()) {
		t.Errorf("timestamps not host clock: first %v last %v (start %v)", st.First, st.Last, before)
	}
	rows := tshark(t, path, "frame.number", "udp.payload", "frame.comment", "frame.interface_name", "icmp.type")
	if uint64(len(rows)) != st.Packets {
		t.Fatalf("tshark reads %d packets, Stop reports %d: %q", len(rows), st.Packets, rows)
	}
	if st.Received != st.Packets+st.Drops {
		t.Errorf("kernel received %d, but %d written + %d dropped", st.Received, st.Packets, st.Drops)
	}
	var udp []string
	commentOn := map[string]string{}
	for _, r := range rows {
		f := strings.Split(r, "|")
		if f[3] != "machine-a" {
			t.Errorf("interface name %q", f[3])
		}
		if f[2] != "" {
			commentOn[f[2]] = f[0]
		}
		if f[1] != "" && f[4] == "" { // not the copy inside an ICMP error
			b := make([]byte, len(f[1])/2)
			fmt.Sscanf(f[1], "%x", &b)
			udp = append(udp, string(b))
		}
	}
	if want := "one-0 one-1 one-2 two-0 two-1"; strings.Join(udp, " ") != want {
		t.Errorf("datagrams %q, want %q", udp, want)
	}
	if commentOn["step one start"] != "1" {
		t.Errorf("first mark on packet %q, want 1 (comments: %v)", commentOn["step one start"], commentOn)
	}
	if n := commentOn["step two start"]; n == "" || n == "1" {
		t.Errorf("second mark on packet %q", n)
	}
	// No packet followed the last mark: it must be in the final statistics block.
	comments, recv, drop, delivered := lastISB(t, path)
	if len(comments) != 1 || comments[0] != "step end" {
		t.Errorf("ISB comments %q, want [step end]", comments)
	}
	if recv != st.Received || drop != 0 || delivered != st.Packets {
		t.Errorf("ISB recv %d drop %d delivered %d, want %d 0 %d", recv, drop, delivered, st.Received, st.Packets)
	}
	if _, err := c.Stop(ctx); err == nil {
		t.Error("second Stop did not fail")
	}
}

// fileBlock is one pcapng block as readBlocks found it.
type fileBlock struct {
	typ  uint32
	body []byte // between the length fields
}

// readBlocks walks the file's block structure by the pcapng spec,
// independently of the writer. tail is the length of an incomplete last
// block (0 when the file ends on a block boundary).
func readBlocks(t *testing.T, path string) (blocks []fileBlock, tail int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for off+12 <= len(b) {
		n := int(binary.LittleEndian.Uint32(b[off+4:]))
		if n < 12 || n%4 != 0 {
			t.Fatalf("%s: bad block length %d at offset %d", path, n, off)
		}
		if off+n > len(b) {
			break
		}
		if end := binary.LittleEndian.Uint32(b[off+n-4:]); int(end) != n {
			t.Fatalf("%s: block at %d: trailing length %d, leading %d", path, off, end, n)
		}
		blocks = append(blocks, fileBlock{binary.LittleEndian.Uint32(b[off:]), b[off+8 : off+n-4]})
		off += n
	}
	return blocks, len(b) - off
}

// options returns a block's options by code, from the offset where they start.
func options(body []byte, from int) map[uint16][][]byte {
	opts := map[uint16][][]byte{}
	for o := body[from:]; len(o) >= 4; {
		code, l := binary.LittleEndian.Uint16(o), int(binary.LittleEndian.Uint16(o[2:]))
		if code == 0 {
			break
		}
		opts[code] = append(opts[code], o[4:4+l])
		o = o[4+(l+3)/4*4:]
	}
	return opts
}

// lastISB reads the file's final block, which must be an Interface
// Statistics Block, and returns its comments and counters.
func lastISB(t *testing.T, path string) (comments []string, recv, drop, delivered uint64) {
	t.Helper()
	blocks, tail := readBlocks(t, path)
	if tail != 0 || len(blocks) == 0 {
		t.Fatalf("%s: %d blocks, %d bytes of an incomplete one", path, len(blocks), tail)
	}
	last := blocks[len(blocks)-1]
	if last.typ != blockISB {
		t.Fatalf("last block type %d, want 5 (ISB)", last.typ)
	}
	opts := options(last.body, 12) // after interface id and timestamp
	for _, c := range opts[1] {
		comments = append(comments, string(c))
	}
	u64 := func(code uint16) uint64 {
		if len(opts[code]) != 1 {
			t.Fatalf("ISB option %d: %q", code, opts[code])
		}
		return binary.LittleEndian.Uint64(opts[code][0])
	}
	return comments, u64(4), u64(5), u64(8)
}

func TestStartErrors(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root")
	}
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no iface", Config{Path: filepath.Join(dir, "x")}},
		{"no path", Config{Iface: "lo"}},
		{"missing netns", Config{Netns: "fb-does-not-exist", Iface: "lo", Path: filepath.Join(dir, "y")}},
		{"missing iface", Config{Iface: "fb-nope0", Path: filepath.Join(dir, "z")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := Start(ctx, tc.cfg); err == nil {
				c.Stop(ctx)
				t.Fatal("Start succeeded")
			}
		})
	}
	// An existing file is never overwritten.
	existing := filepath.Join(dir, "exists.pcapng")
	os.WriteFile(existing, []byte("keep"), 0o644)
	if c, err := Start(ctx, Config{Iface: "lo", Path: existing}); err == nil {
		c.Stop(ctx)
		t.Fatal("Start overwrote a file")
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep" {
		t.Fatal("existing file changed")
	}
}
