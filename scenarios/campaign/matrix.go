package campaign

import (
	"fmt"
	"time"

	"github.com/firstboot/firstboot/scenarios"
)

// Job is one cell of the matrix: one run of one scenario, on a host with
// one label, one repetition.
type Job struct {
	// Key names the cell: scenario[@label]/rN. It is unique in a campaign.
	Key        string `json:"key"`
	Scenario   string `json:"scenario"`
	Label      string `json:"label,omitempty"`
	Repetition int    `json:"repetition"`
	// What the job asks of a host: the machine's CPUs and memory, KVM.
	CPUs      int  `json:"cpus"`
	MemoryMiB int  `json:"memory_mib"`
	KVM       bool `json:"kvm,omitempty"`
	// Timeout bounds the run; a job whose worker died runs again after it.
	Timeout time.Duration `json:"timeout"`
}

// JobKey names a cell.
func JobKey(scenario, label string, rep int) string {
	k := scenario
	if label != "" {
		k += "@" + label
	}
	return fmt.Sprintf("%s/r%d", k, rep)
}

// Matrix lists the campaign's jobs: each scenario, on each host label, each
// repetition, repetition 1 of every cell before repetition 2 (so a
// campaign stopped early has every scenario at least once).
func (c *Campaign) Matrix() []Job {
	labels := c.Hosts
	if len(labels) == 0 {
		labels = []string{""}
	}
	most := c.Repetitions
	for _, s := range c.Scenarios {
		most = max(most, c.RepetitionsOf(s.Name))
	}
	var out []Job
	for rep := 1; rep <= most; rep++ {
		for _, s := range c.Scenarios {
			if rep > c.RepetitionsOf(s.Name) {
				continue
			}
			for _, l := range labels {
				out = append(out, Job{
					Key: JobKey(s.Name, l, rep), Scenario: s.Name, Label: l, Repetition: rep,
					CPUs: s.Machine.CPUs, MemoryMiB: s.Machine.Memory.MiB(), KVM: c.Limits.Accel == "kvm",
					Timeout: c.RunTimeout(s),
				})
			}
		}
	}
	return out
}

// ScenarioNamed returns the campaign's scenario called name, or nil.
func (c *Campaign) ScenarioNamed(name string) *scenarios.Scenario {
	for _, s := range c.Scenarios {
		if s.Name == name {
			return s
		}
	}
	return nil
}
