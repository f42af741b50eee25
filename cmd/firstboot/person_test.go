package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/internal/vnctest"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// liveRun is a firstboot command running in the background with a person
// at its terminal: the test writes lines to its standard input and reads
// what it tells the person on standard error.
type liveRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	mu     sync.Mutex
	output bytes.Buffer // everything it printed
	done   chan struct{}
	code   int

	// Dir is the run directory; Display the VNC address, when served.
	Dir, Display string
}

// startLive starts the binary; it returns once the run has said where its
// directory (and display, with --display) is.
func startLive(t *testing.T, bin string, args ...string) *liveRun {
	t.Helper()
	r := &liveRun{t: t, cmd: exec.Command(bin, args...), lines: make(chan string, 1000), done: make(chan struct{})}
	var err error
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout = writerFunc(func(p []byte) (int, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.output.Write(p)
	})
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.mu.Lock()
			r.output.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			select {
			case r.lines <- sc.Text():
			default:
			}
		}
		err := r.cmd.Wait()
		r.code = r.cmd.ProcessState.ExitCode()
		if err != nil && r.code < 0 {
			r.code = -1
		}
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Signal(os.Interrupt)
			select {
			case <-r.done:
			case <-time.After(2 * time.Minute):
				r.cmd.Process.Kill()
			}
		}
	})
	r.Dir = r.expect(`^firstboot: run \S+: directory (\S+)$`, 5*time.Minute)[1]
	for _, a := range args {
		if a == "--display" {
			r.Display = r.expect(`^firstboot: display: vnc://(\S+) `, time.Minute)[1]
		}
	}
	return r
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// expect reads what the run tells the person until a line matches.
func (r *liveRun) expect(pattern string, timeout time.Duration) []string {
	r.t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.After(timeout)
	for {
		select {
		case l := <-r.lines:
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-deadline:
			r.t.Fatalf("the run never said /%s/ in %s; it said:\n%s", pattern, timeout, r.said())
		case <-r.done:
			// Lines still queued may hold it.
			for {
				select {
				case l := <-r.lines:
					if m := re.FindStringSubmatch(l); m != nil {
						return m
					}
				default:
					r.t.Fatalf("the run ended (exit %d) without saying /%s/:\n%s", r.code, pattern, r.said())
				}
			}
		}
	}
}

func (r *liveRun) said() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.output.String()
}

// say types a line in the run's terminal (Enter included).
func (r *liveRun) say(line string) {
	r.t.Helper()
	if _, err := io.WriteString(r.stdin, line+"\n"); err != nil {
		r.t.Fatalf("typing %q: %v", line, err)
	}
}

// wait waits for the run to end and returns its output and exit code.
func (r *liveRun) wait(timeout time.Duration) (string, int) {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		r.t.Fatalf("the run did not end in %s:\n%s", timeout, r.said())
	}
	return r.said(), r.code
}

// steps returns the names of the run's steps, in order, and checks they
// follow each other without gaps.
func timelineSteps(t *testing.T, m *manifest.Manifest) []string {
	t.Helper()
	var names []string
	ss := m.Steps()
	for i, s := range ss {
		names = append(names, s.Name)
		if i > 0 && s.Start.Sub(ss[i-1].End) > time.Second {
			t.Errorf("a gap of %s between steps %s and %s", s.Start.Sub(ss[i-1].End), ss[i-1].Name, s.Name)
		}
	}
	return names
}

// captureComments are the packet comments of a run's pcapng, read by tshark.
func captureComments(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("tshark", "-r", filepath.Join(dir, "capture.pcapng"), "-n", "-Y", "frame.comment", "-T", "fields", "-e", "frame.comment").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	return string(out)
}

// TestPersonAtTheKeyboard runs the test guest twice at once, both driven by
// a person: a manual run (--manual) served on a VNC display, whose steps the
// person makes with Enter and with firstboot mark from another shell; and a
// scenario with pause actions, continued once with Enter and once with
// firstboot continue. Real VNC viewers (vncsnapshot, and the test's own)
// see the screen through the display.
func TestPersonAtTheKeyboard(t *testing.T) {
	e := newE2E(t)
	if _, err := exec.LookPath("vncsnapshot"); err != nil {
		testenv.Missing(t, "vncsnapshot not installed (run scripts/provision.sh)")
	}
	dir := t.TempDir()
	// A manual scenario: image and machine only, not even a name.
	manual := filepath.Join(dir, "by-hand.yaml")
	write(t, manual, "image: {builtin: testguest}\nmachine: {memory: 256MiB}\ncapture: {window: 4m}\n")
	paused := filepath.Join(dir, "paused.yaml")
	write(t, paused, `name: paused
image: {builtin: testguest}
machine: {memory: 256MiB}
capture: {window: 4m}
steps:
  - name: first-boot
    actions:
      - start
      - console_expect: { pattern: "FIRSTBOOT-GUEST ready", timeout: 2m }
      - pause: "look at the machine, then press Enter"
  - name: browse
    actions:
      - pause: "one more look"
      - console_send: "fbguest run browse https news.example.com"
      - console_expect: { pattern: "FIRSTBOOT-GUEST done browse", timeout: 60s }
      - shutdown: { timeout: 30s }
`)
	t.Run("manual", func(t *testing.T) {
		t.Parallel()
		runs := t.TempDir()
		r := startLive(t, e.bin, "run", manual, "--manual", "--display", "127.0.0.1:0", "--runs-dir", runs,
			"--state-dir", e.state, "--image-cache", e.cache, "--accel", "tcg")
		r.expect(`Step "boot" has begun`, time.Minute)

		// Two viewers at once see the screen: firstboot's own test viewer,
		// and vncsnapshot, which is nothing of firstboot's.
		c, err := vnctest.Dial(r.Display)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		img, err := c.Screen()
		if err != nil || img.Bounds().Dx() < 320 {
			t.Fatalf("screen through the display: %v %v", img.Bounds(), err)
		}
		_, port, _ := strings.Cut(r.Display, ":")
		p, _ := strconv.Atoi(port)
		shot := filepath.Join(t.TempDir(), "shot.jpg")
		if out, err := exec.Command("vncsnapshot", "-quiet", "-allowblank", fmt.Sprintf("127.0.0.1:%d", p-5900), shot).CombinedOutput(); err != nil {
			t.Fatalf("vncsnapshot through --display: %v\n%s", err, out)
		}
		if f, err := os.Open(shot); err != nil {
			t.Fatal(err)
		} else if j, err := jpeg.Decode(f); err != nil || j.Bounds() != img.Bounds() {
			t.Errorf("vncsnapshot's picture: %v, %v; the test viewer saw %v", j, err, img.Bounds())
		}

		if out, code := e.run(t, "", "continue", r.Dir); code == 0 || !strings.Contains(out, "nothing is paused") {
			t.Errorf("continue in a manual run: exit %d\n%s", code, out)
		}
		// The guest is up (and hears the power button the end presses).
		waitConsole(t, r.Dir, "FIRSTBOOT-GUEST ready", 2*time.Minute)
		if out, code := e.run(t, "", "mark", r.Dir, "login"); code != 0 {
			t.Fatalf("mark login: exit %d\n%s", code, out)
		}
		r.expect(`step "boot" ended; step "login" has begun`, time.Minute)
		time.Sleep(3 * time.Second)
		r.say("browse")
		r.expect(`step "login" ended; step "browse" has begun`, time.Minute)
		r.say("browse")
		r.expect(`there is a step "browse" already`, time.Minute)
		time.Sleep(2 * time.Second)
		if out, code := e.run(t, "", "mark", r.Dir, "--end"); code != 0 {
			t.Fatalf("mark --end: exit %d\n%s", code, out)
		}
		out, code := r.wait(3 * time.Minute)
		if code != 0 {
			t.Fatalf("manual run: exit %d\n%s", code, out)
		}
		m, err := manifest.Read(r.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != manifest.StatusComplete || m.Scenario.Name != "by-hand" {
			t.Errorf("manifest: status %s (%s), scenario %q", m.Status, m.Reason, m.Scenario.Name)
		}
		if got := strings.Join(timelineSteps(t, m), " "); got != "boot login browse" {
			t.Errorf("steps %q, want boot login browse", got)
		}
		shutdownIn := ""
		for _, en := range m.Timeline {
			if en.Kind == manifest.KindAction && strings.HasPrefix(en.Name, "shutdown") {
				shutdownIn = en.Step
			}
		}
		if shutdownIn != "browse" {
			t.Errorf("the end's shutdown ran in step %q, want the last step", shutdownIn)
		}
		// Each boundary is a comment in the capture: on the next packet
		// (tshark shows those), or, when the machine sent nothing more, in
		// the closing interface statistics; either way its text is in the file.
		if comments := captureComments(t, r.Dir); !strings.Contains(comments, `firstboot step "boot" start`) {
			t.Errorf("tshark finds no comment for the first step's start:\n%s", comments)
		}
		pcap, err := os.ReadFile(filepath.Join(r.Dir, "capture.pcapng"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`step "boot" end`, `step "login" start`, `step "login" end`, `step "browse" start`, `step "browse" end`} {
			if !bytes.Contains(pcap, []byte("firstboot "+want)) {
				t.Errorf("the capture has no comment %q", want)
			}
		}
		steps := analysisSteps(t, r.Dir)
		if len(steps) != 3 || steps[0] != "boot" || steps[2] != "browse" {
			t.Errorf("analysis steps %v", steps)
		}
	})
	t.Run("pause", func(t *testing.T) {
		t.Parallel()
		runs := t.TempDir()
		r := startLive(t, e.bin, "run", paused, "--runs-dir", runs, "--state-dir", e.state, "--image-cache", e.cache, "--accel", "tcg")
		r.expect(`paused: look at the machine, then press Enter`, 3*time.Minute)
		time.Sleep(2 * time.Second)
		if out, code := e.run(t, "", "mark", r.Dir, "looked"); code != 0 {
			t.Fatalf("mark during a pause: exit %d\n%s", code, out)
		}
		r.say("")
		r.expect(`paused: one more look`, time.Minute)
		time.Sleep(2 * time.Second)
		if out, code := e.run(t, "", "continue", filepath.Base(r.Dir), "--runs-dir", runs); code != 0 {
			t.Fatalf("continue by run id: exit %d\n%s", code, out)
		}
		out, code := r.wait(3 * time.Minute)
		if code != 0 {
			t.Fatalf("run with pauses: exit %d\n%s", code, out)
		}
		if _, code := e.run(t, "", "continue", r.Dir); code == 0 {
			t.Error("continue of a finished run succeeded")
		}
		m, err := manifest.Read(r.Dir)
		if err != nil {
			t.Fatal(err)
		}
		var pauses []time.Duration
		marked := false
		for _, en := range m.Timeline {
			if en.Kind == manifest.KindAction && strings.HasPrefix(en.Name, "pause") {
				pauses = append(pauses, en.End.Sub(en.Start))
			}
			marked = marked || (en.Kind == manifest.KindMark && en.Name == "looked")
		}
		if len(pauses) != 2 || pauses[0] < 2*time.Second || pauses[1] < 2*time.Second {
			t.Errorf("pauses lasted %v; want two of at least the 2 s the person took", pauses)
		}
		if !marked {
			t.Error("the mark made during the pause is not in the timeline")
		}
		if !strings.Contains(captureComments(t, r.Dir), "firstboot mark looked") {
			t.Error("the mark is not in the capture")
		}
	})
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// analysisSteps are the step names of a run's analysis.json.
func analysisSteps(t *testing.T, dir string) []string {
	t.Helper()
	a := readAnalysis(t, dir)
	var names []string
	for _, s := range a.Steps {
		names = append(names, s.Name)
	}
	return names
}

func readAnalysis(t *testing.T, dir string) schema.Analysis {
	t.Helper()
	var a schema.Analysis
	data, err := os.ReadFile(filepath.Join(dir, "analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// waitConsole waits until the run's serial console log shows text.
func waitConsole(t *testing.T, dir, text string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(500 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(dir, "console.log")); bytes.Contains(b, []byte(text)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console never showed %q in %s", text, timeout)
		}
	}
}
