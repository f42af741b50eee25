package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/scenarios"
)

func TestStatusText(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		s    scenarios.ProgressSnapshot
		now  time.Time
		want string
	}{
		{"setting up", scenarios.ProgressSnapshot{Started: t0, Phase: "setting up lab"}, t0.Add(3 * time.Second),
			"setting up lab · 0:03 elapsed · 0 packets, 0 B"},
		{"a step", scenarios.ProgressSnapshot{Started: t0, Step: "browse", StepNum: 2, Steps: 4, Action: "wait for console /done/ (timeout 1m0s)",
			WindowEnd: t0.Add(3 * time.Minute), Packets: 117, Bytes: 26143, LastNew: "news.example.com"}, t0.Add(42*time.Second + 600*time.Millisecond),
			"step 2/4 browse · wait for console /done/ (timeout 1m0s) · 0:42 elapsed · 117 packets, 26.1 kB · new: news.example.com · 2:17 left in the window"},
		{"an install", scenarios.ProgressSnapshot{Started: t0, Step: "install", StepNum: 1, Steps: 3, WindowEnd: t0.Add(4 * time.Hour), Packets: 2_500_000, Bytes: 3_400_000_000},
			t0.Add(2*time.Hour + 5*time.Minute), "step 1/3 install · 2:05:00 elapsed · 2500000 packets, 3.40 GB · 1:55:00 left in the window"},
		{"window over", scenarios.ProgressSnapshot{Started: t0, Phase: "tearing down", WindowEnd: t0}, t0.Add(time.Minute),
			"tearing down · 1:00 elapsed · 0 packets, 0 B · 0:00 left in the window"},
	} {
		if got := statusText(tc.s, tc.now); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestStatusLine draws on a real pseudo-terminal: the line is rewritten in
// place, cut to the terminal's width, and log lines written meanwhile land
// whole above it. On a file there is no status line.
func TestStatusLine(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 40}); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); io.Copy(&got, ptmx) }()

	line := newStatusLine(tty)
	if line == nil {
		t.Fatal("a pseudo-terminal is not taken for a terminal")
	}
	line.draw("step 1/4 first-boot · 0:01 elapsed")
	line.draw("step 1/4 first-boot · 0:01 elapsed") // unchanged: not drawn again
	io.WriteString(line, "level=INFO msg=step name=browse\n")
	line.draw("step 2/4 browse · a very long action that does not fit in forty columns")
	line.clear()
	tty.Close()
	wg.Wait()
	// The terminal turns \n into \r\n.
	want := "\r\x1b[Kstep 1/4 first-boot · 0:01 elapsed" +
		"\r\x1b[Klevel=INFO msg=step name=browse\r\nstep 1/4 first-boot · 0:01 elapsed" +
		"\r\x1b[Kstep 2/4 browse · a very long action t…" +
		"\r\x1b[K"
	if got.String() != want {
		t.Errorf("terminal got\n%q\nwant\n%q", got.String(), want)
	}

	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if newStatusLine(f) != nil {
		t.Error("a plain file is taken for a terminal")
	}
}

// TestProgressLogged: without a terminal the status goes to the log as
// plain lines.
func TestProgressLogged(t *testing.T) {
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		showProgress(ctx, &scenarios.Progress{}, nil, slog.New(slog.NewTextHandler(&log, nil)), 10*time.Millisecond)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(log.String(), "\n") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], `level=INFO msg=progress status="starting · 0 packets, 0 B"`) || strings.ContainsAny(log.String(), "\r\x1b") {
		t.Errorf("progress log:\n%s", log.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunLiveStatus runs the test guest the way a user at a terminal does
// (through a pseudo-terminal) and checks the live status: rewritten in place,
// it follows the steps and actions, the time since the start and the time
// left in the window, the packets and the new names, while the log lines
// stay whole above it. Then the run list and show find the run, and its
// summary shows no warning.
func TestRunLiveStatus(t *testing.T) {
	e := newE2E(t)
	runs := t.TempDir()
	cmd := exec.Command(e.bin, "run", "../../scenarios/testguest.yaml", "--runs-dir", runs,
		"--state-dir", e.state, "--image-cache", e.cache, "--accel", "tcg")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 250})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	if _, err := io.Copy(&out, ptmx); err != nil && !errors.Is(err, syscall.EIO) { // EIO: the run closed the terminal
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		e.logDaemonLogs(t)
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()

	// Each redraw starts with \r and erase-line; what follows up to the next
	// redraw is a log line (ending in a newline) and the status again, or
	// the status alone.
	var statuses []string
	for _, seg := range strings.Split(text, "\r\x1b[K")[1:] {
		if i := strings.LastIndex(seg, "\n"); i >= 0 {
			seg = seg[i+1:]
		}
		if seg != "" {
			statuses = append(statuses, seg)
		}
	}
	if len(statuses) < 5 {
		t.Fatalf("%d status lines drawn, want one every %s for the whole run:\n%q", len(statuses), statusRedraw, text)
	}
	re := regexp.MustCompile(`^(.+) · (\d+):(\d\d) elapsed · (\d+) packets, [0-9.]+ k?B(?: · new: (\S+))?(?: · (\d+):(\d\d) left in the window)?$`)
	var lastPackets, lastElapsed int
	seen := map[string]bool{}
	for _, s := range statuses {
		m := re.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("status line %q is not of the expected form", s)
			continue
		}
		elapsed := atoi(t, m[2])*60 + atoi(t, m[3])
		packets := atoi(t, m[4])
		if elapsed < lastElapsed || packets < lastPackets {
			t.Errorf("status %q goes back from %d s, %d packets", s, lastElapsed, lastPackets)
		}
		lastElapsed, lastPackets = elapsed, packets
		if m[5] != "" {
			seen["new name"] = true
		}
		if m[6] != "" {
			// The scenario's window is 3 minutes.
			if left := atoi(t, m[6])*60 + atoi(t, m[7]); left > 180 || left+elapsed < 170 {
				t.Errorf("status %q: %d s left after %d s in a 3-minute window", s, left, elapsed)
			}
			seen["window"] = true
		}
		if strings.HasPrefix(m[1], "step 1/4 first-boot · wait for console /FIRSTBOOT-GUEST ready/") {
			seen["first-boot action"] = true
		}
	}
	for _, what := range []string{"first-boot action", "new name", "window"} {
		if !seen[what] {
			t.Errorf("no status line showed the %s:\n%s", what, strings.Join(statuses, "\n"))
		}
	}
	// Log lines stay whole, each on a line of its own.
	if !regexp.MustCompile(`\r\x1b\[Ktime=\S+ level=INFO msg=step run=\S+ name=browse\r\n`).MatchString(text) {
		t.Errorf("the log line of step browse is not whole on its own line:\n%q", text)
	}
	// The status is taken away before the result is printed.
	if !regexp.MustCompile(`\r\x1b\[Krun directory: \S+\r\nstatus: complete\r\n`).MatchString(text) {
		t.Errorf("the result does not follow a cleared status line:\n%q", text)
	}
	dirs, _ := filepath.Glob(filepath.Join(runs, "*-testguest-*"))
	if len(dirs) != 1 {
		t.Fatalf("run directories: %v", dirs)
	}
	m, err := manifest.Read(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	if uint64(lastPackets) > m.Capture.Packets || lastPackets == 0 {
		t.Errorf("the status counted %d packets, the capture has %d", lastPackets, m.Capture.Packets)
	}

	// The run list and show, on the real run.
	list, code := runBinary(t, e.bin, "", "runs", "--runs-dir", runs)
	if code != 0 || !regexp.MustCompile(`(?m)^`+filepath.Base(dirs[0])+` +testguest +1 +complete +\S+ \S+ +\S+ +`+strconv.FormatUint(m.Capture.Packets, 10)+` +2/2 met$`).MatchString(list) {
		t.Errorf("runs (exit %d) does not list the run as complete with its packets and 2/2 expectations met:\n%s", code, list)
	}
	show, code := runBinary(t, e.bin, "", "show", "last", "--runs-dir", runs)
	for _, want := range []string{"status        complete\n", "expectations  2/2 met\n", "warnings     none\n", "checksums left to the sender's NIC"} {
		if code != 0 || !strings.Contains(show, want) {
			t.Errorf("show last (exit %d) lacks %q:\n%s", code, want, show)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
