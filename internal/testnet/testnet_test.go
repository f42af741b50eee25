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
