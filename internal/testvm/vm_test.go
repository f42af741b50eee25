package testvm

import (
	"regexp"
	"testing"
	"time"
)

// TestConsoleLines feeds console output in chunks that split lines and a
// CRLF, as a serial console does, and checks both views of it.
func TestConsoleLines(t *testing.T) {
	v := &VM{t: t, Start: time.Now(), changed: make(chan struct{}), exited: make(chan struct{})}
	t0 := v.Start.Add(time.Second)
	v.append([]byte("first\r\nsec"), t0)
	v.append([]byte("ond\nhost login: "), t0.Add(time.Second))

	i, l := v.WaitLine(regexp.MustCompile(`^second$`), 0, time.Second)
	if i != 1 || !l.At.Equal(t0.Add(time.Second)) {
		t.Errorf("WaitLine(second) = %d at %v, want line 1 at %v", i, l.At, t0.Add(time.Second))
	}
	if i, l := v.WaitLine(regexp.MustCompile(`^first$`), 0, time.Second); i != 0 || l.Text != "first" {
		t.Errorf("WaitLine(first) = %d %q, want 0 \"first\" (CR trimmed)", i, l.Text)
	}
	end := v.WaitOutput(regexp.MustCompile(`login: `), time.Second)
	if want := len("first\r\nsecond\nhost login: "); end != want {
		t.Errorf("WaitOutput(login) = %d, want %d (a prompt without newline)", end, want)
	}
	if got := v.Since(end); got != 2 {
		t.Errorf("Since(%d) = %v s, want 2", end, got)
	}
	if got := v.TextFrom(end - len("login: ")); got != "login: " {
		t.Errorf("TextFrom = %q", got)
	}
	// A later match starts after the previous one.
	go func() {
		time.Sleep(50 * time.Millisecond)
		v.append([]byte("\nhost login: again\n"), t0.Add(3*time.Second))
	}()
	if end2 := v.WaitOutput(regexp.MustCompile(`login: `), 5*time.Second); end2 <= end {
		t.Errorf("second WaitOutput(login) = %d, want past %d", end2, end)
	}
	if i, _ := v.WaitLine(regexp.MustCompile(`login: again$`), 2, time.Second); i != 3 {
		t.Errorf("WaitLine(again) = %d, want 3", i)
	}
}
