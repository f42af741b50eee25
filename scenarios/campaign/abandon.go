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
// It changes only the manifest. The lab-wide reaper (issue 19: marking dead
// runs when a firstboot brings the lab up, and repairing a torn last pcapng
// block) does the same for any run on its own host; this one also reaches
// runs a worker on another host left in a shared results directory.
func MarkAbandoned(runsDir, key string, attempt int) []string {
	ents, _ := os.ReadDir(runsDir)
	var out []string
	for _, e := range ents {
		dir := filepath.Join(runsDir, e.Name())
		m, err := manifest.Read(dir)
		if err != nil || m.Status != manifest.StatusRunning || m.Campaign == nil || m.Campaign.Job != key || m.Campaign.Attempt >= attempt {
			continue
		}
		m.Status = manifest.StatusIncomplete
		m.Reason = fmt.Sprintf("abandoned: the worker running it (%s, attempt %d) stopped before the run ended; the job ran again", m.Campaign.Worker, m.Campaign.Attempt)
		if manifest.Write(dir, m) == nil {
			out = append(out, dir)
		}
	}
	return out
}
