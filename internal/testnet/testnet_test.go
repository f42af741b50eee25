package testnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNamespaceLifecycle(t *testing.T) {
	Require(t)
	ctx := context.Background()
	ns, err := Create(ctx, "fbtest")
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = ns.Close()
		}
	})
	if !strings.HasPrefix(ns.Name, "fbtest-") || len(ns.Name) != len("fbtest-")+8 {
		t.Errorf("name %q: want fbtest-<8 hex>", ns.Name)
	}
	if !slices.Contains(netnsList(t), ns.Name) {
		t.Fatalf("%s not in `ip netns list`", ns.Name)
	}
	out, err := exec.Command("ip", "-n", ns.Name, "link", "show", "lo").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show lo: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "mtu 1500") || !strings.Contains(string(out), "UP") {
		t.Errorf("lo is not up with mtu 1500: %s", out)
	}
	// A process left running inside must not keep the namespace alive.
	sleeper := ns.Command(ctx, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ns.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	_ = sleeper.Wait()
	if slices.Contains(netnsList(t), ns.Name) {
		t.Errorf("%s still listed after Close", ns.Name)
	}
}

func netnsList(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func TestDoRunsInsideNamespace(t *testing.T) {
	Require(t)
	ns := New(t, "fbtest")
	var names []string
	err := ns.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"lo"}) {
		t.Errorf("interfaces seen inside a fresh namespace = %v, want only lo", names)
	}
	if _, err := ns.Dial(context.Background(), "tcp", "localhost:80"); err == nil || !strings.Contains(err.Error(), "IP literal") {
		t.Errorf("Dial with a name: err = %v, want a refusal asking for an IP literal", err)
	}
}

// TestVethCapture serves HTTP in one namespace, fetches it with curl from the
// other and checks the capture with tshark: the Host header is there, frames
// never exceed the MTU, and tcpdump's count matches the file.
func TestVethCapture(t *testing.T) {
	Require(t, "tcpdump", "tshark", "curl")
	a, b := New(t, "fbtest-a"), New(t, "fbtest-b")
	NewVeth(t, Link{NS: a, Iface: "eth0", Addrs: []string{"10.88.0.2/24", "fd88::2/64"}},
		Link{NS: b, Iface: "eth0", Addrs: []string{"10.88.0.1/24", "fd88::1/64"}})

	// The address exists only inside b, so listening on it proves the socket is there.
	l, err := b.Listen("tcp", "10.88.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("0123456789", 20000) // 200 kB: many full-size segments
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	pcap := filepath.Join(t.TempDir(), "veth.pcap")
	c := NewCapture(t, a, "eth0", pcap)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, host := range []string{"one.test", "two.test"} {
		out, err := a.Run(ctx, "curl", "-sS", "--resolve", host+":8080:10.88.0.1", "http://"+host+":8080/")
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(body) {
			t.Fatalf("curl got %d bytes, want %d", len(out), len(body))
		}
	}
	st, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}

	if got, want := FieldSet(t, pcap, "http.host", ""), []string{"one.test:8080", "two.test:8080"}; !slices.Equal(got, want) {
		t.Errorf("tshark http.host = %v, want %v", got, want)
	}
	lens := FieldValues(t, pcap, "frame.len", "")
	if int64(len(lens)) != st.Captured || st.Captured == 0 {
		t.Errorf("tshark reads %d frames, tcpdump reported %d captured", len(lens), st.Captured)
	}
	maxLen := 0
	for _, s := range lens {
		n, _ := strconv.Atoi(s)
		maxLen = max(maxLen, n)
	}
	if maxLen != MTU+14 {
		t.Errorf("largest frame %d bytes, want %d (full-size Ethernet frames, no offload super-packets)", maxLen, MTU+14)
	}
	if st.Dropped != 0 {
		t.Errorf("tcpdump dropped %d packets", st.Dropped)
	}
}

// TestFlushShortCapture sends three datagrams and reads the capture file while
// tcpdump still runs: after Flush all three must be in it, although libpcap
// (without immediate mode) would otherwise hold them for up to a second. On lo
// the kernel shows tcpdump every packet twice, which Flush must allow for.
func TestFlushShortCapture(t *testing.T) {
	Require(t, "tcpdump", "tshark")
	for _, tc := range []struct{ name, iface, dst string }{
		{"loopback", "lo", "127.0.0.1:9"},
		{"veth", "eth0", "10.89.0.1:9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := New(t, "fbtest"), New(t, "fbtest")
			if tc.iface == "eth0" {
				NewVeth(t, Link{NS: a, Iface: "eth0", Addrs: []string{"10.89.0.2/24"}}, Link{NS: b, Iface: "eth0", Addrs: []string{"10.89.0.1/24"}})
			} else {
				b = a
			}
			// A receiver, so no ICMP error comes back and fails the next write.
			sink, err := b.ListenPacket("udp", tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			path := filepath.Join(t.TempDir(), "flush.pcap")
			c := NewCapture(t, a, tc.iface, path)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, err := a.Dial(ctx, "udp", tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for i := range 3 {
				if _, err := fmt.Fprintf(conn, "flush-%d", i); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range ReadPcap(t, path) {
				if app := f.Packet.ApplicationLayer(); app != nil {
					got = append(got, string(app.Payload()))
				}
			}
			if want := []string{"flush-0", "flush-1", "flush-2"}; !slices.Equal(got, want) {
				t.Errorf("payloads in the file after Flush = %q, want %q", got, want)
			}
			// FrameFields numbers frames as ReadPcap does.
			ports := FrameFields(t, path, "udp", "udp.dstport", "udp.length")
			if len(ports) != 3 {
				t.Errorf("tshark sees %d UDP frames, want 3: %v", len(ports), ports)
			}
			for num, v := range ports {
				if v[0] != "9" || v[1] != "15" {
					t.Errorf("frame %d: udp.dstport, udp.length = %q, want 9 and 15", num, v)
				}
			}
			if p := c.Complete(t); p != path {
				t.Errorf("Complete returned %s, want %s", p, path)
			}
		})
	}
}

// TestBackground starts a server in the namespace, waits for it to listen and
// checks that the cleanup kills it.
func TestBackground(t *testing.T) {
	Require(t, "busybox", "ss")
	var cmd *exec.Cmd
	t.Run("serve", func(t *testing.T) {
		ns := New(t, "fbtest")
		cmd = ns.Background(t, "busybox", "nc", "-l", "-p", "7070")
		ns.WaitListening(t, "tcp", "7070")
		if out := ns.MustRun(t, "ss", "-Hltn", "sport = :7070"); !strings.Contains(string(out), "LISTEN") {
			t.Errorf("ss shows no listener: %s", out)
		}
	})
	if cmd.ProcessState == nil {
		t.Fatal("the background process was not reaped after the cleanup")
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("background process ended with %v, want killed by SIGKILL", cmd.ProcessState)
	}
}
