package scenarios

import (
	"sync"
	"time"
)

// Progress is a run's state as it goes, for a live display (an install can
// take hours): what the run is doing and what the capture has seen so far.
// The runner writes it; a display reads Snapshot from another goroutine.
// A nil *Progress ignores every update.
type Progress struct {
	mu sync.Mutex
	s  ProgressSnapshot
}

// ProgressSnapshot is a copy of a run's progress at one instant.
type ProgressSnapshot struct {
	// Started is when the run began.
	Started time.Time
	// Phase is what the run does outside the scenario's steps: "setting up
	// lab", "capturing until the machine stops", "tearing down"; "" while a
	// step runs.
	Phase string
	// Step is the running step (StepNum of Steps, from 1); Action describes
	// its running action.
	Step           string
	StepNum, Steps int
	Action         string
	// WindowEnd is when the capture window closes; zero before it opens.
	WindowEnd time.Time
	// Packets and Bytes count the frames captured so far (captured bytes).
	Packets, Bytes uint64
	// LastNew is the last name (DNS query, TLS SNI, HTTP Host) the machine
	// used for the first time, and when.
	LastNew   string
	LastNewAt time.Time
}

// Snapshot returns the progress now.
func (p *Progress) Snapshot() ProgressSnapshot {
	if p == nil {
		return ProgressSnapshot{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s
}

func (p *Progress) update(f func(s *ProgressSnapshot)) {
	if p == nil {
		return
	}
	p.mu.Lock()
	f(&p.s)
	p.mu.Unlock()
}

func (p *Progress) started(at time.Time) { p.update(func(s *ProgressSnapshot) { s.Started = at }) }

func (p *Progress) phase(what string) {
	p.update(func(s *ProgressSnapshot) { s.Phase, s.Step, s.StepNum, s.Action = what, "", 0, "" })
}

func (p *Progress) step(name string, num, of int) {
	p.update(func(s *ProgressSnapshot) { s.Phase, s.Step, s.StepNum, s.Steps, s.Action = "", name, num, of, "" })
}

func (p *Progress) action(what string) { p.update(func(s *ProgressSnapshot) { s.Action = what }) }

func (p *Progress) window(end time.Time) { p.update(func(s *ProgressSnapshot) { s.WindowEnd = end }) }

// packet counts one captured frame; the capture goroutine calls it.
func (p *Progress) packet(n int) {
	p.update(func(s *ProgressSnapshot) { s.Packets++; s.Bytes += uint64(n) })
}

// newName records a name the machine used for the first time.
func (p *Progress) newName(name string, at time.Time) {
	p.update(func(s *ProgressSnapshot) { s.LastNew, s.LastNewAt = name, at })
}
