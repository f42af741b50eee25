package campaign

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/firstboot/firstboot/results/manifest"
)

// MarkAbandoned marks runs of job key that an earlier attempt left
// "running" (its worker was killed or its host rebooted) incomplete, with the
// reason, and returns their directories. Their capture so far is kept.
//
// Runs whose owner was on this host are results/rundir's (every run marks
// those its killed owner left, repairing the capture too): this one reaches
// what rundir cannot judge, runs a worker on another host left in a shared
// results directory, knowing from the queue that their job ran again.
func MarkAbandoned(runsDir, key string, attempt int) []string {
	host, _ := os.Hostname()
	ents, _ := os.ReadDir(runsDir)
	var out []string
	for _, e := range ents {
		dir := filepath.Join(runsDir, e.Name())
		m, err := manifest.Read(dir)
		if err != nil || m.Status != manifest.StatusRunning || m.Campaign == nil || m.Campaign.Job != key || m.Campaign.Attempt >= attempt {
			continue
		}
		if m.Owner != nil && (m.Owner.Host == "" || m.Owner.Host == host) {
			continue // rundir.MarkAbandoned judges it
		}
		m.Status = manifest.StatusIncomplete
		m.Reason = fmt.Sprintf("abandoned: the worker running it (%s, attempt %d) stopped before the run ended; the job ran again", m.Campaign.Worker, m.Campaign.Attempt)
		if manifest.Write(dir, m) == nil {
			out = append(out, dir)
		}
	}
	return out
}
