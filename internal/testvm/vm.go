package testvm

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"
)

// VMConfig is what a test boots.
type VMConfig struct {
	Kernel, Initrd, Cmdline string
	MemoryMB                int
	MAC                     string // the NIC's MAC address
	// Disk, when set, is a qcow2 image attached as a virtio disk.
	Disk string
	// Reboot lets a guest reboot restart the machine; by default QEMU exits
	// (-no-reboot).
	Reboot bool
	// Monitor, when set, is the path of a unix socket serving QEMU's human
	// monitor (see VM.Monitor).
	Monitor string
	// Newline ends each line Send writes; "\n" when empty.
	Newline string
	// QEMU holds extra QEMU arguments.
	QEMU []string
}

// VM is a QEMU process with its serial console on stdio. The console is
// kept as raw bytes, because prompts ("login: ") do not end with a newline,
// and as the lines finished so far, each with the time its newline came.
type VM struct {
	t     testing.TB
	Cmd   *exec.Cmd
	Start time.Time // when QEMU was started

	stdin   io.WriteCloser
	newline string
	monPath string

	mu        sync.Mutex
	buf       []byte
	stamps    []stamp // when the buffer reached each length, for timings
	lines     []Line
	lineStart int           // offset in buf of the line not finished yet
	pos       int           // where the next WaitOutput starts
	changed   chan struct{} // closed and replaced on new output
	exited    chan struct{}
}

// Line is one finished console line, without its line ending.
type Line struct {
	At   time.Time
	Text string
}

type stamp struct {
	n  int
	at time.Time
}

// Boot starts QEMU (TCG) in n's namespace with its NIC on n's tap. The
// process is killed in t.Cleanup if still running, and the console's tail
// is logged if the test failed.
func Boot(t testing.TB, n *Net, c VMConfig) *VM {
	t.Helper()
	mon := "none"
	if c.Monitor != "" {
		mon = "unix:" + c.Monitor + ",server=on,wait=off"
	}
	args := []string{"netns", "exec", n.NS.Name, "qemu-system-x86_64", "-accel", "tcg", "-m", fmt.Sprint(c.MemoryMB),
		"-display", "none", "-serial", "stdio", "-monitor", mon, "-nodefaults",
		"-kernel", c.Kernel, "-initrd", c.Initrd, "-append", c.Cmdline}
	if c.Disk != "" {
		args = append(args, "-drive", "file="+c.Disk+",if=virtio,format=qcow2")
	}
	args = append(args, "-netdev", "tap,id=n0,ifname="+n.Tap+",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+c.MAC)
	if !c.Reboot {
		args = append(args, "-no-reboot")
	}
	args = append(args, c.QEMU...)
	v := &VM{t: t, Cmd: exec.Command("ip", args...), newline: c.Newline, monPath: c.Monitor,
		changed: make(chan struct{}), exited: make(chan struct{})}
	if v.newline == "" {
		v.newline = "\n"
	}
	var err error
	if v.stdin, err = v.Cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := v.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.Cmd.Stderr = v.Cmd.Stdout
	v.Start = time.Now()
	if err := v.Cmd.Start(); err != nil {
		t.Fatalf("starting QEMU: %v", err)
	}
	go v.read(out)
	t.Cleanup(func() {
		select {
		case <-v.exited:
		default:
			_ = v.Cmd.Process.Kill()
			<-v.exited
		}
		if t.Failed() {
			t.Logf("console tail:\n%s", v.tail(40))
		}
	})
	return v
}

func (v *VM) read(out io.Reader) {
	b := make([]byte, 4096)
	for {
		k, err := out.Read(b)
		if k > 0 {
			v.append(b[:k], time.Now())
		}
		if err != nil {
			break
		}
	}
	v.mu.Lock()
	if v.lineStart < len(v.buf) {
		v.lines = append(v.lines, Line{time.Now(), string(bytes.TrimRight(v.buf[v.lineStart:], "\r"))})
		v.lineStart = len(v.buf)
	}
	v.mu.Unlock()
	_ = v.Cmd.Wait()
	close(v.exited)
}

func (v *VM) append(p []byte, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.buf = append(v.buf, p...)
	v.stamps = append(v.stamps, stamp{len(v.buf), now})
	for {
		i := bytes.IndexByte(v.buf[v.lineStart:], '\n')
		if i < 0 {
			break
		}
		v.lines = append(v.lines, Line{now, string(bytes.TrimRight(v.buf[v.lineStart:v.lineStart+i], "\r"))})
		v.lineStart += i + 1
	}
	close(v.changed)
	v.changed = make(chan struct{})
}

// Exited is closed when QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// tail is the last n console lines and the unfinished one, timed from Start.
func (v *VM) tail(n int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b bytes.Buffer
	for _, l := range v.lines[max(0, len(v.lines)-n):] {
		fmt.Fprintf(&b, "%7.2fs %s\n", l.At.Sub(v.Start).Seconds(), l.Text)
	}
	if v.lineStart < len(v.buf) {
		fmt.Fprintf(&b, "         %s\n", v.buf[v.lineStart:])
	}
	return b.String()
}

// wait calls match under the lock until it reports true, QEMU exits or
// timeout passes; what names the wait in the failure.
func (v *VM) wait(match func() bool, what string, timeout time.Duration) {
	v.t.Helper()
	deadline := time.After(timeout)
	for {
		v.mu.Lock()
		if match() {
			v.mu.Unlock()
			return
		}
		ch := v.changed
		v.mu.Unlock()
		select {
		case <-ch:
		case <-v.exited:
			v.t.Fatalf("QEMU exited while waiting for %s", what)
		case <-deadline:
			v.t.Fatalf("no console %s within %s", what, timeout)
		}
	}
}

// WaitLine returns the first console line at index >= from matching re, and
// its index.
func (v *VM) WaitLine(re *regexp.Regexp, from int, timeout time.Duration) (int, Line) {
	v.t.Helper()
	var idx int
	var line Line
	v.wait(func() bool {
		for i := from; i < len(v.lines); i++ {
			if re.MatchString(v.lines[i].Text) {
				idx, line = i, v.lines[i]
				return true
			}
		}
		return false
	}, fmt.Sprintf("line matching %q", re), timeout)
	return idx, line
}

// WaitOutput waits for re in the console output after the previous
// WaitOutput's match, also within a line not finished yet, and returns the
// offset just past the match.
func (v *VM) WaitOutput(re *regexp.Regexp, timeout time.Duration) int {
	v.t.Helper()
	var end int
	v.wait(func() bool {
		if loc := re.FindIndex(v.buf[v.pos:]); loc != nil {
			v.pos += loc[1]
			end = v.pos
			return true
		}
		return false
	}, fmt.Sprintf("output matching %q", re), timeout)
	return end
}

// Offset is the console output's length so far.
func (v *VM) Offset() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.buf)
}

// TextFrom is the console output from byte offset from on.
func (v *VM) TextFrom(from int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return string(v.buf[from:])
}

// Since returns when the console first held byte offset n, in seconds after Start.
func (v *VM) Since(n int) float64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := sort.Search(len(v.stamps), func(i int) bool { return v.stamps[i].n >= n })
	if i == len(v.stamps) {
		return time.Since(v.Start).Seconds()
	}
	return v.stamps[i].at.Sub(v.Start).Seconds()
}

// Send types line on the console, ended by the configured newline.
func (v *VM) Send(line string) {
	v.t.Helper()
	if _, err := io.WriteString(v.stdin, line+v.newline); err != nil {
		v.t.Fatalf("writing to the console: %v", err)
	}
}

// Monitor runs one command on QEMU's human monitor and returns its output.
func (v *VM) Monitor(command string) string {
	v.t.Helper()
	if v.monPath == "" {
		v.t.Fatal("the VM was started without a monitor")
	}
	c, err := net.DialTimeout("unix", v.monPath, 5*time.Second)
	if err != nil {
		v.t.Fatalf("connecting to the QEMU monitor: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var out bytes.Buffer
	// The monitor greets with a banner and a "(qemu)" prompt; after the
	// command it prints the command's output and the prompt again.
	readPrompt := func() error {
		buf := make([]byte, 4096)
		for !bytes.HasSuffix(bytes.TrimRight(out.Bytes(), " "), []byte("(qemu)")) {
			n, err := c.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := readPrompt(); err != nil {
		v.t.Fatalf("reading the QEMU monitor banner: %v (got %q)", err, out.String())
	}
	out.Reset()
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		v.t.Fatalf("writing to the QEMU monitor: %v", err)
	}
	if err := readPrompt(); err != nil {
		v.t.Fatalf("QEMU monitor %q: %v (got %q)", command, err, out.String())
	}
	return out.String()
}
