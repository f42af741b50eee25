package owner

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestSelfIsNotGone(t *testing.T) {
	o := Self()
	if o.Start == 0 || o.Boot == "" || o.Host == "" {
		t.Fatalf("Self() = %+v: want start time, boot id and host", o)
	}
	if o.Gone() {
		t.Error("the running test process counts as gone")
	}
	if !o.Is(Self()) {
		t.Error("two calls of Self name different processes")
	}
}

func TestGone(t *testing.T) {
	self := Self()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child, err := Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if child.Gone() {
		t.Fatal("a running child counts as gone")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	// Killed but not yet waited for: a zombie, whose resources (its libvirt
	// connection) are already released.
	deadline := time.Now().Add(5 * time.Second)
	for !child.Gone() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !child.Gone() {
		t.Error("a killed (zombie) child does not count as gone")
	}
	cmd.Wait()
	if !child.Gone() {
		t.Error("a killed and reaped child does not count as gone")
	}

	for _, c := range []struct {
		name string
		o    Owner
		gone bool
	}{
		{"pid recycled by a later process", Owner{PID: self.PID, Start: self.Start + 1, Boot: self.Boot, Host: self.Host}, true},
		{"an earlier boot", Owner{PID: self.PID, Start: self.Start, Boot: "00000000-0000-0000-0000-000000000000", Host: self.Host}, true},
		{"another host cannot be checked", Owner{PID: child.PID, Start: 1, Boot: "x", Host: self.Host + "-elsewhere"}, false},
		{"pid only (older firstboot), process alive", Owner{PID: self.PID}, false},
		{"pid only (older firstboot), process gone", Owner{PID: child.PID}, true},
		{"no owner", Owner{}, false},
	} {
		if got := c.o.Gone(); got != c.gone {
			t.Errorf("%s: Gone() = %v, want %v", c.name, got, c.gone)
		}
	}
}

func TestStringParse(t *testing.T) {
	for _, o := range []Owner{
		Self(),
		{PID: 42},
		{PID: 7, Start: 99, Boot: "b0b7d1e8-6d3e-4d55-9c0e-0a1b2c3d4e5f", Host: "lab-1.example"},
	} {
		got, err := Parse(o.String())
		if err != nil || !got.Is(o) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", o.String(), got, err, o)
		}
	}
	for _, bad := range []string{"", "pid=x", "start=5", "pid=1,colour=blue"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
