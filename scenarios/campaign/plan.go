package campaign

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// WritePlan prints what the campaign will do, without a lab: the matrix,
// how many runs this host holds at once, retries, timeouts, the schedule,
// baseline and fail_on.
func WritePlan(w io.Writer, c *Campaign, here Capacity, now time.Time) error {
	jobs := c.Matrix()
	fmt.Fprintf(w, "campaign %s (%s, sha256 %s)\n", c.Name, c.File, c.SHA256[:12])
	if c.Description != "" {
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace(c.Description))
	}
	hosts := "any host"
	if len(c.Hosts) > 0 {
		hosts = fmt.Sprintf("%d host labels (%s)", len(c.Hosts), strings.Join(c.Hosts, ", "))
	}
	reps := fmt.Sprintf("%d repetitions", c.Repetitions)
	for _, s := range c.Scenarios {
		if c.RepetitionsOf(s.Name) != c.Repetitions {
			reps = "repetitions (per scenario)"
		}
	}
	fmt.Fprintf(w, "matrix: %d scenarios × %s × %s = %d jobs\n\n", len(c.Scenarios), hosts, reps, len(jobs))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "job\tscenario\timage\tOS\tmachine\tqueue\ttimeout")
	for _, j := range jobs {
		s := c.ScenarioNamed(j.Scenario)
		img := s.Image.Builtin
		if img == "" {
			img = s.Image.Kind + " " + s.Image.Path
		}
		os := strings.TrimSpace(s.OS.Product + " " + s.OS.Release)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d CPU, %d MiB\t%s\t%s\n", j.Key, j.Scenario, img, dashIfEmpty(os), j.CPUs, j.MemoryMiB, RunQueue(j.Label, j.KVM), j.Timeout)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	limit := "none"
	if c.Limits.Parallel > 0 || c.Limits.Memory > 0 {
		limit = fmt.Sprintf("parallel %d, memory %d MiB", c.Limits.Parallel, c.Limits.Memory.MiB())
	}
	fmt.Fprintf(w, "on this host: up to %d runs at once (%d CPUs, %d MiB for guests; limits: %s; each run counts its machine's CPUs and memory + %d MiB)\n",
		here.AtOnce(jobs), here.CPUs, here.MemoryMiB, limit, RunOverheadMiB)
	for _, j := range jobs {
		if err := here.Fits(j); err != nil {
			fmt.Fprintf(w, "  cannot run here: %v\n", err)
			break
		}
	}
	fmt.Fprintf(w, "longest run: %s; all runs one after another at most %s\n", longest(jobs), total(jobs))
	fmt.Fprintf(w, "retries: %d after an infrastructure failure (lab error, libvirtd gone, incomplete capture); failed expectations are results\n", c.Retries())
	fmt.Fprintf(w, "a job whose worker died runs again once its timeout has passed\n")
	if c.Cron != nil {
		var next []string
		for _, t := range c.Next(now, 3) {
			next = append(next, t.Format(time.RFC3339))
		}
		fmt.Fprintf(w, "schedule: %q; next: %s (firstboot campaign serve)\n", c.Schedule, strings.Join(next, ", "))
	} else {
		fmt.Fprintln(w, "schedule: none")
	}
	fmt.Fprintf(w, "baseline: %s\n", dashIfEmpty(c.BaselinePath()))
	fmt.Fprintf(w, "fail_on: %s\n", dashIfEmpty(strings.Join(c.FailOn, ", ")))
	fmt.Fprintf(w, "publish: %s\n", dashIfEmpty(c.Publish))
	return nil
}

func longest(jobs []Job) time.Duration {
	var d time.Duration
	for _, j := range jobs {
		d = max(d, j.Timeout)
	}
	return d
}

func total(jobs []Job) time.Duration {
	var d time.Duration
	for _, j := range jobs {
		d += j.Timeout
	}
	return d
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// bySize orders jobs smallest first (for AtOnce).
func bySize(jobs []Job) []Job {
	out := append([]Job(nil), jobs...)
	sort.SliceStable(out, func(i, j int) bool {
		ci, mi := need(out[i])
		cj, mj := need(out[j])
		return mi < mj || (mi == mj && ci < cj)
	})
	return out
}
