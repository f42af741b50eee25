// Package rundir finds run directories that a killed firstboot left looking
// alive (a manifest that says "running", or an analysis or report pending,
// while the process that wrote it is gone) and makes them honest: the run is
// marked incomplete with the reason, and its capture is made readable to its
// last packet.
//
// `firstboot run` and `firstboot lab up` call MarkAbandoned on the runs
// directory before they start; any command that lists or reads runs can
// call it too. It needs nothing but the directory.
package rundir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/firstboot/firstboot/internal/fsutil"
	"github.com/firstboot/firstboot/internal/owner"
	"github.com/firstboot/firstboot/results/manifest"
)

// Killed starts the reason of every run MarkAbandoned marks.
const Killed = "firstboot was killed"

// Marked is a run directory MarkAbandoned marked incomplete.
type Marked struct {
	Dir   string `json:"dir"`
	RunID string `json:"run_id"`
	// Owner is the process that was killed.
	Owner owner.Owner `json:"owner"`
	// Reason is what the manifest now says.
	Reason string `json:"reason"`
	// Capture is what was done to the capture file (zero without one).
	Capture Repair `json:"capture"`
}

// abandoned reports whether a manifest's owner was still working on the run
// directory and has ended. Manifests of firstboot versions that recorded no
// owner cannot be judged and are left alone.
func abandoned(m *manifest.Manifest) bool {
	return (m.Status == manifest.StatusRunning || m.Doing != nil) && m.Owner != nil && m.Owner.Gone()
}

// Abandoned lists the run directories in runsDir that MarkAbandoned would
// mark, changing nothing.
func Abandoned(runsDir string) ([]string, error) {
	dirs, err := runDirs(runsDir)
	var out []string
	for _, d := range dirs {
		if m, err := manifest.Read(d); err == nil && abandoned(m) {
			out = append(out, d)
		}
	}
	return out, err
}

// MarkAbandoned marks every run directory in runsDir (each holding a
// manifest.json) whose owner ended while it still worked on it (status
// running, or Doing set):
//
//   - the manifest says incomplete, with a reason that starts with Killed
//     and says when ("during step idle", "during the analysis"); the phase
//     it was killed in joins the timeline with the error and no end (a
//     scenario step also becomes the failed step);
//   - a capture still being written is made whole (RepairCapture): a torn
//     last block cut off, interface statistics appended; the manifest then
//     counts the packets the file holds, ends the capture at the last
//     packet, and says the kernel's drop count is unknown.
//
// Directories of live processes, other hosts and older firstboot versions
// (no owner recorded) are not touched. Two firstboot processes marking at
// once do not mark a directory twice. It returns what it marked; an error
// names the directories it could not mark (the others are marked).
func MarkAbandoned(ctx context.Context, runsDir string) ([]Marked, error) {
	dirs, err := runDirs(runsDir)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var out []Marked
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return out, errors.Join(append(errs, err)...)
		}
		if m, err := manifest.Read(d); err != nil || !abandoned(m) {
			continue
		}
		mk, ok, err := mark(ctx, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("marking the abandoned run %s: %w", d, err))
		}
		if ok {
			out = append(out, mk)
		}
	}
	return out, errors.Join(errs...)
}

// runDirs lists the directories of runsDir that hold a manifest.
func runDirs(runsDir string) ([]string, error) {
	entries, err := os.ReadDir(runsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runs directory: %w", err)
	}
	var dirs []string
	for _, e := range entries {
		d := filepath.Join(runsDir, e.Name())
		if _, err := os.Stat(filepath.Join(d, manifest.FileName)); err == nil && e.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

// mark marks one directory under its lock, after reading its manifest again
// (another process may have marked it meanwhile).
func mark(ctx context.Context, dir string) (Marked, bool, error) {
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return Marked{}, false, err
	}
	defer unlock()
	m, err := manifest.Read(dir)
	if err != nil || !abandoned(m) {
		return Marked{}, false, err
	}
	mk := Marked{Dir: dir, RunID: m.RunID, Owner: *m.Owner}
	// The capture first: the manifest then counts what the file holds.
	var capErr error
	if m.Capture.File != "" {
		path := filepath.Join(dir, m.Capture.File)
		if _, err := os.Stat(path); err == nil {
			comment := fmt.Sprintf("%s (%s) while capturing: the kernel's receive and drop counts were lost with it; isb_usrdeliv counts the packets in this file", Killed, m.Owner)
			mk.Capture, capErr = RepairCapture(path, m.Capture.Start, comment)
			if capErr == nil && m.Capture.StoppedBy == "" {
				m.Capture.Packets, m.Capture.Drops, m.Capture.DropsUnknown = mk.Capture.Packets, 0, true
				m.Capture.End = mk.Capture.Last
				m.Capture.StoppedBy = "killed"
			}
		}
	}
	mk.Reason = reason(m, dir)
	if capErr != nil {
		mk.Reason += "; the capture could not be repaired: " + capErr.Error()
	}
	closeTimeline(m)
	if m.Status == manifest.StatusIncomplete && m.Reason != "" {
		m.Reason += "; then " + mk.Reason
	} else {
		m.Reason = mk.Reason
	}
	m.Status, m.Doing = manifest.StatusIncomplete, nil
	m.Files = manifest.ListFiles(dir)
	if err := manifest.Write(dir, m); err != nil {
		return mk, false, err
	}
	mk.Reason = m.Reason
	return mk, true, capErr
}

// reason says when the owner was killed, from the manifest.
func reason(m *manifest.Manifest, dir string) string {
	who := fmt.Sprintf("process %d ended without finishing", m.Owner.PID)
	if m.Doing == nil {
		return fmt.Sprintf("%s (%s)", Killed, who)
	}
	switch what := m.Doing.What; {
	case what == "analysis" || what == "report":
		return fmt.Sprintf("%s during the %s (%s); the run itself had ended (%s): run `firstboot analyze %s` and `firstboot report %s`", Killed, what, who, m.Status, dir, dir)
	case m.Capture.File != "":
		return fmt.Sprintf("%s during %s (%s); the capture so far is kept", Killed, what, who)
	default:
		return fmt.Sprintf("%s during %s (%s)", Killed, what, who)
	}
}

// closeTimeline records the phase the owner was killed in as a timeline
// entry with the error and no end (the analysis runs an open last step to
// the end of the capture); a scenario step becomes the run's failed step.
func closeTimeline(m *manifest.Manifest) {
	if m.Doing == nil {
		return
	}
	kind, name, ok := strings.Cut(m.Doing.What, " ")
	switch {
	case !ok:
		return
	case kind == "step":
		kind = manifest.KindStep
		if m.FailedStep == "" {
			m.FailedStep = name
		}
	case kind == "setup" || kind == "cleanup":
		if kind == "cleanup" {
			name += " cleanup"
		}
		kind = manifest.KindSetup
	default:
		return
	}
	m.Timeline = append(m.Timeline, manifest.Entry{Name: name, Kind: kind, Start: m.Doing.Since, Error: Killed})
}

// lockDir takes an exclusive flock on the directory itself (no lock file
// left in the run directory), waiting until ctx ends.
func lockDir(ctx context.Context, dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := fsutil.Flock(ctx, f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Summary is one line for a log: "2 runs marked incomplete: a, b".
func Summary(marked []Marked) string {
	ids := make([]string, len(marked))
	for i, m := range marked {
		ids[i] = m.RunID
	}
	return fmt.Sprintf("%d run(s) a killed firstboot left running marked incomplete: %s", len(marked), strings.Join(ids, ", "))
}
