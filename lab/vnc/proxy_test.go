package vnc

import (
	"bufio"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/vnctest"
)

// startQEMU runs a bare QEMU (SeaBIOS, no disk: it prints its banner and
// "No bootable device") whose VNC server listens on a unix socket, with
// its input events traced to a log, and returns the socket and the log.
func startQEMU(t *testing.T) (sock, trace string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.Missing(t, "qemu-system-x86_64 not installed (run scripts/provision.sh)")
	}
	dir := t.TempDir()
	sock, trace = filepath.Join(dir, "vnc.sock"), filepath.Join(dir, "trace.log")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-m", "64",
		"-vga", "std", "-display", "none", "-vnc", "unix:"+sock,
		"-usb", "-device", "usb-tablet", "-d", "trace:input_event_*", "-D", trace)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return sock, trace
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU made no VNC socket in 20 s: %s", out.String())
		}
	}
}

// TestProxyWithQEMU puts the proxy in front of a real QEMU VNC server: two
// viewers connect at once and see the screen, keys and clicks sent through
// the proxy reach QEMU (its input trace shows them) and are reported to
// OnInput, extensions a viewer asks for are not passed on, and an
// independent viewer (vncsnapshot) takes a snapshot through it.
func TestProxyWithQEMU(t *testing.T) {
	sock, trace := startQEMU(t)
	var mu sync.Mutex
	var inputs []Input
	p, err := Listen("127.0.0.1:0", Config{Dial: DialUnix(sock), OnInput: func(in Input) {
		mu.Lock()
		inputs = append(inputs, in)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	c, err := vnctest.Dial(p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.Contains(c.Name, "QEMU") {
		t.Errorf("desktop name %q, want QEMU's", c.Name)
	}
	// QEMU's extended key events, pointer-type change and fences: if any
	// reached QEMU it would answer with a pseudo-rectangle vnctest refuses.
	if err := c.SetEncodings(0, -223, -258, -257, -312, -313); err != nil {
		t.Fatal(err)
	}
	var screen *image.RGBA
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if screen, err = c.Screen(); err != nil {
			t.Fatal(err)
		}
		// SeaBIOS draws in 640x480 first, then switches to text mode.
		if (lit(screen) > 200 && screen.Bounds().Dx() == 720) || time.Now().After(deadline) {
			break
		}
	}
	if n := lit(screen); n <= 200 {
		t.Fatalf("the screen through the proxy has %d lit pixels; SeaBIOS's text should be there", n)
	}
	// SeaBIOS switched to VGA text mode: the resize came through too.
	if b := screen.Bounds(); b.Dx() != 720 || b.Dy() != 400 {
		t.Errorf("screen %v, want the 720x400 text mode", b)
	}

	c2, err := vnctest.Dial(p.Addr().String())
	if err != nil {
		t.Fatalf("a second viewer: %v", err)
	}
	if s2, err := c2.Screen(); err != nil || lit(s2) <= 200 {
		t.Errorf("second viewer: %v", err)
	}
	c2.Close()

	if err := c.Type("a", 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Press(vnctest.KeyReturn); err != nil {
		t.Fatal(err)
	}
	if err := c.Click(100, 50); err != nil {
		t.Fatal(err)
	}
	// A round trip makes sure QEMU has read everything sent before it.
	if _, err := c.Screen(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := summarize(inputs)
	mu.Unlock()
	want := "key a down|key a up|key ff0d down|key ff0d up|ptr 0 100,50|ptr 1 100,50|ptr 0 100,50"
	if got != want {
		t.Errorf("OnInput saw\n %s\nwant\n %s", got, want)
	}
	var log []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		log, _ = os.ReadFile(trace)
		if strings.Contains(string(log), "button left, down 0") {
			break
		}
	}
	for _, w := range []string{"key qcode a, down 1", "key qcode a, down 0", "key qcode ret, down 1", "button left, down 1", "button left, down 0"} {
		if !strings.Contains(string(log), w) {
			t.Errorf("QEMU's input trace lacks %q:\n%s", w, log)
		}
	}

	t.Run("vncsnapshot", func(t *testing.T) {
		if _, err := exec.LookPath("vncsnapshot"); err != nil {
			testenv.Missing(t, "vncsnapshot not installed (run scripts/provision.sh)")
		}
		port := p.Addr().(*net.TCPAddr).Port
		out := filepath.Join(t.TempDir(), "shot.jpg")
		cmd := exec.Command("vncsnapshot", "-quiet", "-allowblank", fmt.Sprintf("127.0.0.1:%d", port-5900), out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("vncsnapshot: %v\n%s", err, b)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := jpeg.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != 720 || b.Dy() != 400 {
			t.Errorf("vncsnapshot's image is %v, want 720x400", b)
		}
	})

	p.Close()
	// An update already on its way may still be read; then the end.
	var err2 error
	for i := 0; i < 3 && err2 == nil; i++ {
		_, err2 = c.Screen()
	}
	if err2 == nil {
		t.Error("the viewer still works after the proxy closed")
	}
}

// lit counts pixels that are not (nearly) black.
func lit(img *image.RGBA) int {
	n := 0
	for i := 0; i < len(img.Pix); i += 4 {
		if int(img.Pix[i])+int(img.Pix[i+1])+int(img.Pix[i+2]) > 96 {
			n++
		}
	}
	return n
}

func summarize(ins []Input) string {
	var parts []string
	for _, in := range ins {
		switch in.Kind {
		case Key:
			k := fmt.Sprintf("%x", in.Keysym)
			if in.Keysym < 0x80 {
				k = string(rune(in.Keysym))
			}
			parts = append(parts, fmt.Sprintf("key %s %s", k, map[bool]string{true: "down", false: "up"}[in.Down]))
		case Pointer:
			parts = append(parts, fmt.Sprintf("ptr %d %d,%d", in.Buttons, in.X, in.Y))
		}
	}
	return strings.Join(parts, "|")
}

// TestProxyMachineGone: a viewer that connects while the machine's VNC
// server is not there is told why, in RFB's own refusal.
func TestProxyMachineGone(t *testing.T) {
	p, err := Listen("127.0.0.1:0", Config{Dial: DialUnix(filepath.Join(t.TempDir(), "none.sock"))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = vnctest.Dial(p.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "the machine's screen is not available") {
		t.Errorf("dial: %v", err)
	}
}

// TestProxyKeepsSpacing: when OnInput takes time (the recorder's
// screenshot under a click), the events queued behind it reach the machine
// with the spacing the viewer gave them, not bunched: a press and release
// arriving together would be no click in a USB tablet report.
func TestProxyKeepsSpacing(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type arrival struct {
		buttons byte
		at      time.Time
	}
	got := make(chan arrival, 16)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		v, err := acceptVersion(c)
		if err == nil {
			err = acceptSecurity(c, v)
		}
		if err != nil {
			return
		}
		c.Write(ServerInit{Width: 640, Height: 480, Name: "fake"}.marshal())
		r := bufio.NewReader(c)
		for {
			msg, err := readClientMessage(r)
			if err != nil {
				return
			}
			if msg[0] == msgPointerEvent {
				got <- arrival{msg[1], time.Now()}
			}
		}
	}()
	p, err := Listen("127.0.0.1:0", Config{Dial: DialUnix(sock), OnInput: func(in Input) {
		if in.Buttons == 1 {
			time.Sleep(300 * time.Millisecond) // a slow screenshot under the click
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := vnctest.Dial(p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Pointer(0, 10, 10)
	c.Pointer(1, 10, 10)
	time.Sleep(60 * time.Millisecond)
	c.Pointer(0, 10, 10)
	var seen []arrival
	for len(seen) < 3 {
		select {
		case a := <-got:
			seen = append(seen, a)
		case <-time.After(10 * time.Second):
			t.Fatalf("the machine got %d of 3 pointer events", len(seen))
		}
	}
	if gap := seen[2].at.Sub(seen[1].at); gap < 50*time.Millisecond {
		t.Errorf("press and release reached the machine %s apart; the viewer sent them 60 ms apart", gap)
	}
}
