package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testenv"
)

// The hidden capture command (the capture benchmark's driver) records an
// interface for a while and prints the kernel's counts, which match what
// tshark reads from the file.
func TestCaptureCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root for AF_PACKET")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "lo.pcapng")
	go func() {
		// Loopback traffic while the capture runs.
		time.Sleep(300 * time.Millisecond)
		c, err := net.Dial("udp", "127.0.0.1:9")
		if err != nil {
			return
		}
		defer c.Close()
		for range 20 {
			c.Write([]byte("capture command test"))
		}
	}()
	stdout, err := runCLI(t, dir, "capture", "lo", "--out", out, "--duration", "1s")
	if err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	var packets, received, dropped, freezes int
	line := stdout[strings.LastIndex(strings.TrimSpace(stdout), "\n")+1:]
	if _, err := fmt.Sscanf(line, "packets %d received %d dropped %d ring_freezes %d", &packets, &received, &dropped, &freezes); err != nil {
		t.Fatalf("stats line %q: %v", line, err)
	}
	if packets < 20 || received != packets+dropped {
		t.Errorf("%q: want at least the 20 datagrams and received = packets + dropped", line)
	}
	tshark, err := exec.Command("tshark", "-r", out, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	if n := strings.Count(string(tshark), "\n"); n != packets {
		t.Errorf("tshark reads %d packets, the command wrote %d", n, packets)
	}
}
