package scenarios

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/firstboot/firstboot/results/manifest"
)

// What a person at the keyboard can say to a run, from its terminal (a line
// ended by Enter, or the end of input) or from another shell through the
// run's control socket (firstboot continue / mark).
const (
	SayLine     = "line"     // Enter in the terminal, with what was typed before it
	SayEOF      = "eof"      // the terminal's input ended (Ctrl-D)
	SayContinue = "continue" // firstboot continue RUN
	SayMark     = "mark"     // firstboot mark RUN NAME
	SayEnd      = "end"      // firstboot mark RUN --end
)

// Said is one thing a person said.
type Said struct {
	Kind string
	Text string // the line typed, or the mark's name
}

// Person connects a run to the person at the keyboard. What they say goes to
// whoever listens (a pause, a manual run); with nobody listening a mark is
// noted in the timeline and the capture, and the rest is refused with what
// to do instead. It is safe for concurrent use.
type Person struct {
	// Prompt receives what the run tells the person; nil discards.
	Prompt io.Writer
	// RunDir names the run in the commands the prompts suggest.
	RunDir string

	mu       sync.Mutex
	listener func(Said) error
	// idle handles what is said while nobody listens.
	idle func(Said) error
}

// Say delivers what the person said; the error is the answer to them.
func (p *Person) Say(s Said) error {
	p.mu.Lock()
	l, idle := p.listener, p.idle
	p.mu.Unlock()
	switch {
	case l != nil:
		return l(s)
	case idle != nil:
		return idle(s)
	}
	return errors.New("the run is not taking requests yet (or any more)")
}

// listen makes l the listener until the returned function is called.
func (p *Person) listen(l func(Said) error) (stop func()) {
	p.mu.Lock()
	p.listener = l
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.listener = nil
		p.mu.Unlock()
	}
}

// Tell writes a line to the person.
func (p *Person) Tell(format string, args ...any) {
	if p == nil || p.Prompt == nil {
		return
	}
	fmt.Fprintf(p.Prompt, "firstboot: "+format+"\n", args...)
}

// ReadTerminal delivers each line read from r as SayLine and the end of
// input as SayEOF. Errors go back to the person on the prompt. It returns
// when r ends; the caller may leave it blocked on a terminal at exit.
func (p *Person) ReadTerminal(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if err := p.Say(Said{Kind: SayLine, Text: strings.TrimSpace(sc.Text())}); err != nil {
			p.Tell("%v", err)
		}
	}
	if err := p.Say(Said{Kind: SayEOF}); err != nil {
		p.Tell("%v", err)
	}
}

// noteMark is what a mark does when no manual run listens: an instant in
// the timeline and a comment in the capture.
func noteMark(env *Env, name string) error {
	if err := checkMarkName(name); err != nil {
		return err
	}
	now := env.Timeline.now()
	env.mark("firstboot mark " + name)
	env.Timeline.add(manifest.Entry{Name: name, Kind: manifest.KindMark, Start: now, End: now})
	return nil
}

// checkMarkName is the loader's rule for marks, for marks said by a person.
func checkMarkName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\\\n") {
		return fmt.Errorf("mark %q: give a name without slashes", name)
	}
	return nil
}

// checkStepName keeps names a person gives usable as step and file names.
func checkStepName(name string) error {
	switch {
	case name == "":
		return errors.New("give a name")
	case strings.ContainsAny(name, "/\\\n\"") || len(name) > 80:
		return fmt.Errorf("%q: use a short name without slashes or quotes", name)
	case name == "before" || name == "after":
		return fmt.Errorf("%q is reserved for traffic outside the steps", name)
	}
	return nil
}

// pause waits until the person says to continue (Enter, or firstboot
// continue); marks said meanwhile are noted.
func (env *Env) pause(ctx context.Context, message string) error {
	p := env.Person
	if p == nil {
		return errors.New("pause: this run has no way to hear a person (run it with firstboot run)")
	}
	done := make(chan struct{})
	var once sync.Once
	stop := p.listen(func(s Said) error {
		switch s.Kind {
		case SayLine, SayContinue:
			once.Do(func() { close(done) })
			return nil
		case SayMark:
			return noteMark(env, s.Text)
		case SayEOF:
			return nil // no terminal any more; firstboot continue still works
		}
		return fmt.Errorf("the run is paused (%s): continue it first", message)
	})
	defer stop()
	p.Tell("paused: %s\n  press Enter here, or run: firstboot continue %s", message, p.RunDir)
	select {
	case <-done:
		p.Tell("continuing")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("paused (%s) until the run ended: %w", message, context.Cause(ctx))
	case <-env.Machine.Stopped():
		return fmt.Errorf("the machine stopped while paused (%s)", message)
	}
}

// ControlSocket is the run's control endpoint in its directory.
const ControlSocket = "control.sock"

// maxSunPath is the longest path a unix socket address holds (Linux: 108
// bytes with the terminating NUL).
const maxSunPath = 107

// socketPath returns a path for the socket name in dir that fits in a unix
// socket address: a long run directory is reached through the /proc/self/fd
// link of an open directory instead. release closes that directory.
func socketPath(dir, name string) (path string, release func(), err error) {
	p := filepath.Join(dir, name)
	if len(p) <= maxSunPath {
		return p, func() {}, nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name), func() { d.Close() }, nil
}

// controlServer answers firstboot continue and mark for one run, one line
// per request and per answer: "continue", "mark NAME", "end"; "ok" or
// "error: why".
type controlServer struct {
	ln   net.Listener
	path string
	wg   sync.WaitGroup
}

// listenControl opens the run's control socket; requests go to p.
func listenControl(dir string, p *Person) (*controlServer, error) {
	path, release, err := socketPath(dir, ControlSocket)
	if err != nil {
		return nil, err
	}
	defer release()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The listener unlinks by the name it was bound with, which may be a
	// /proc/self/fd path gone stale: remove the socket by its real path.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	s := &controlServer{ln: ln, path: filepath.Join(dir, ControlSocket)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				answer := "ok"
				if err := p.Say(parseRequest(strings.TrimSpace(line))); err != nil {
					answer = "error: " + strings.ReplaceAll(err.Error(), "\n", " ")
				}
				io.WriteString(c, answer+"\n")
			}()
		}
	}()
	return s, nil
}

func parseRequest(line string) Said {
	verb, arg, _ := strings.Cut(line, " ")
	return Said{Kind: verb, Text: strings.TrimSpace(arg)}
}

func (s *controlServer) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	os.Remove(s.path)
	return err
}

// Control sends one request to the run in dir (SayContinue, SayMark with
// a name, SayEnd) and returns the run's answer as an error when it refused.
func Control(ctx context.Context, dir, kind, text string) error {
	path, release, err := socketPath(dir, ControlSocket)
	if err != nil {
		return err
	}
	defer release()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%s is not a running run (no one answers on %s)", dir, ControlSocket)
		}
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	req := kind
	if text != "" {
		req += " " + text
	}
	if _, err := io.WriteString(c, req+"\n"); err != nil {
		return err
	}
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("the run did not answer: %w", err)
	}
	answer = strings.TrimSpace(answer)
	if msg, ok := strings.CutPrefix(answer, "error: "); ok {
		return errors.New(msg)
	}
	return nil
}
