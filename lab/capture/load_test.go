package capture

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firstboot/firstboot/lab/netns"
)

// startTest starts a capture on cap0 of a fresh testNetns pair, into a
// file in the test's directory, with cfg's other settings.
func startTest(t *testing.T, cfg Config) (c *Capture, ns, peer, path string) {
	t.Helper()
	ns, peer = testNetns(t)
	cfg.Netns, cfg.Iface, cfg.Path = ns, "cap0", filepath.Join(t.TempDir(), "c.pcapng")
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, ns, peer, cfg.Path
}

// load sends numbered datagrams ("tag-N") from the peer namespace to cap0's
// address, about rate a second (0: as fast as it can), until stop is
// called, which returns how many it sent.
func load(t *testing.T, peer, tag string, rate int) (stop func() int) {
	t.Helper()
	var conn *net.UDPConn
	err := netns.Do(peer, func() error {
		var err error
		// Unconnected, so ICMP port-unreachable answers are not errors.
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	to := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1), Port: 9}
	var done atomic.Bool
	var wg sync.WaitGroup
	sent := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 0, 64)
		start := time.Now()
		for ; !done.Load(); sent++ {
			if rate > 0 && sent%100 == 0 {
				time.Sleep(time.Until(start.Add(time.Duration(sent) * time.Second / time.Duration(rate))))
			}
			buf = strconv.AppendInt(append(buf[:0], tag+"-"...), int64(sent), 10)
			if _, err := conn.WriteToUDP(buf, to); err != nil {
				t.Errorf("send: %v", err)
				return
			}
		}
	}()
	return func() int {
		done.Store(true)
		wg.Wait()
		conn.Close()
		return sent
	}
}

// datagram is one frame of a test capture as tshark reads it: its time (ns
// since the epoch), comments, and the payload when it is a datagram the
// peer sent.
type datagram struct {
	frame    int
	at       int64
	payload  string
	comments []string
}

// readDatagrams returns every frame of the capture, in file order.
func readDatagrams(t *testing.T, path string) (all []datagram) {
	t.Helper()
	for _, r := range tshark(t, path, "frame.number", "frame.time_epoch", "frame.comment", "udp.payload", "icmp.type") {
		f := strings.Split(r, "|")
		d := datagram{}
		d.frame, _ = strconv.Atoi(f[0])
		sec, frac, _ := strings.Cut(f[1], ".")
		s, _ := strconv.ParseInt(sec, 10, 64)
		ns, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		d.at = s*1e9 + ns
		if f[2] != "" {
			d.comments = strings.Split(f[2], ",")
		}
		if f[3] != "" && f[4] == "" { // not the copy inside an ICMP error
			var b []byte
			fmt.Sscanf(f[3], "%x", &b)
			d.payload = string(b)
		}
		all = append(all, d)
	}
	return all
}

// Marks made while packets stream in land on the first packet the kernel
// stamped after the mark, although the ring hands packets over up to
// blockTimeout late.
func TestMarksUnderLoad(t *testing.T) {
	c, _, peer, path := startTest(t, Config{})
	ctx := context.Background()
	stop := load(t, peer, "m", 20000)
	type window struct{ before, after int64 }
	marks := map[string]window{}
	for i := range 5 {
		time.Sleep(100 * time.Millisecond)
		name := fmt.Sprintf("mark %d", i)
		before := time.Now().UnixNano()
		c.Mark(name)
		marks[name] = window{before, time.Now().UnixNano()}
	}
	time.Sleep(100 * time.Millisecond)
	sent := stop()
	st, err := c.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d, %+v", sent, st)
	if st.Drops != 0 || st.Received != st.Packets {
		t.Errorf("received %d, written %d, dropped %d", st.Received, st.Packets, st.Drops)
	}
	all := readDatagrams(t, path)
	found := map[string]bool{}
	for i, d := range all {
		for _, m := range d.comments {
			w, ok := marks[m]
			if !ok || found[m] {
				t.Errorf("frame %d: unexpected or repeated comment %q", d.frame, m)
				continue
			}
			found[m] = true
			// The marked packet came after Mark began; the one before it
			// came before Mark returned.
			if d.at < w.before {
				t.Errorf("%s on frame %d stamped %d ns before Mark", m, d.frame, w.before-d.at)
			}
			if i > 0 && all[i-1].at > w.after {
				t.Errorf("%s on frame %d, but frame %d came %d ns after Mark", m, d.frame, all[i-1].frame, all[i-1].at-w.after)
			}
		}
	}
	if len(found) != len(marks) {
		t.Errorf("marks on packets: %v, want all of %d", found, len(marks))
	}
}

// When the ring is full the kernel drops, and the statistics say exactly
// how many: every packet the kernel received is in the file or counted as
// dropped, in Stats and in the final statistics block.
func TestStatsAccountForDrops(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	var once sync.Once
	// A reader stuck in OnPacket stops emptying a ring of two blocks.
	c, _, peer, path := startTest(t, Config{ringBlocks: 2,
		OnPacket: func([]byte, time.Time) { once.Do(func() { <-release }) }})
	stop := load(t, peer, "d", 0)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if st, _ := c.ring.statistics(); st.Drops >= 1000 {
			break
		}
	}
	stop()
	close(release)
	st, err := c.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	if st.Drops == 0 || st.RingFreezes == 0 {
		t.Errorf("a full ring dropped %d packets and froze %d times, want both > 0", st.Drops, st.RingFreezes)
	}
	if st.Received != st.Packets+st.Drops {
		t.Errorf("kernel received %d, but %d written + %d dropped", st.Received, st.Packets, st.Drops)
	}
	if n := len(tshark(t, path, "frame.number")); uint64(n) != st.Packets {
		t.Errorf("tshark reads %d packets, Stop wrote %d", n, st.Packets)
	}
	if _, recv, drop, delivered := lastISB(t, path); recv != st.Received || drop != st.Drops || delivered != st.Packets {
		t.Errorf("ISB recv %d drop %d delivered %d, want %d %d %d", recv, drop, delivered, st.Received, st.Drops, st.Packets)
	}
}

// When the interface goes away (a machine's tap at power-off) the capture
// ends by itself with every packet it saw, and Stop still closes the file.
func TestInterfaceGone(t *testing.T) {
	c, ns, peer, path := startTest(t, Config{})
	ctx := context.Background()
	sendUDP(t, peer, 50, "g")
	if _, err := netns.Exec(ctx, ns, "ip", "link", "del", "cap0"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("capture still running 5 s after its interface went away")
	}
	st, err := c.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Received != st.Packets+st.Drops || st.Drops != 0 {
		t.Errorf("kernel received %d, %d written, %d dropped", st.Received, st.Packets, st.Drops)
	}
	var got []string
	for _, d := range readDatagrams(t, path) {
		if d.payload != "" {
			got = append(got, d.payload)
		}
	}
	if len(got) != 50 || got[0] != "g-0" || got[49] != "g-49" {
		t.Errorf("datagrams in the file: %d (%q…), want g-0 … g-49", len(got), got[:min(3, len(got))])
	}
}
