package campaign

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Capacity is what one host lends a campaign's runs at once.
type Capacity struct {
	// CPUs: under TCG each virtual CPU keeps a host core busy, so virtual
	// CPUs at once never exceed the host's.
	CPUs int
	// MemoryMiB is for guests, with RunOverheadMiB each for QEMU and capture.
	MemoryMiB int
	// Parallel caps the runs at once; 0: no cap beyond CPUs and memory.
	Parallel int
}

// RunOverheadMiB is counted per run beside its guest's memory: the QEMU
// process, the capture, firstboot's own share.
const RunOverheadMiB = 256

// hostReserveMiB is left to the host and everything else on it.
const hostReserveMiB = 1024

// HostCapacity is this host's: its CPUs and the memory available now less a
// reserve, bounded by the limits given (0: none).
func HostCapacity(parallel, memoryMiB int) Capacity {
	c := Capacity{CPUs: runtime.NumCPU(), MemoryMiB: max(availableMiB()-hostReserveMiB, 0), Parallel: parallel}
	if memoryMiB > 0 && (c.MemoryMiB == 0 || memoryMiB < c.MemoryMiB) {
		c.MemoryMiB = memoryMiB
	}
	return c
}

// availableMiB reads MemAvailable from /proc/meminfo (0 when unknown).
func availableMiB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb / 1024
		}
	}
	return 0
}

// need is what a job takes from a host.
func need(j Job) (cpus, mem int) { return max(j.CPUs, 1), j.MemoryMiB + RunOverheadMiB }

// Fits says why j can never run on this host, or nil.
func (c Capacity) Fits(j Job) error {
	cpus, mem := need(j)
	switch {
	case cpus > c.CPUs:
		return fmt.Errorf("job %s needs %d CPUs; this host has %d", j.Key, cpus, c.CPUs)
	case c.MemoryMiB > 0 && mem > c.MemoryMiB:
		return fmt.Errorf("job %s needs %d MiB (the machine's %d MiB and %d MiB for QEMU and capture); this host lends %d MiB", j.Key, mem, j.MemoryMiB, RunOverheadMiB, c.MemoryMiB)
	}
	return nil
}

// AtOnce is how many of jobs can run at once here, filling the host with
// the smallest first (an upper bound, for the plan).
func (c Capacity) AtOnce(jobs []Job) int {
	s := newSlots(c)
	n := 0
	for _, j := range bySize(jobs) {
		if _, ok := s.take(j); ok {
			n++
		}
	}
	return n
}

// slots hands out the host's capacity to runs.
type slots struct {
	mu             sync.Mutex
	c              Capacity
	cpus, mem, run int
}

func newSlots(c Capacity) *slots { return &slots{c: c} }

// take reserves j's share if it is free now.
func (s *slots) take(j Job) (release func(), ok bool) {
	cpus, mem := need(j)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cpus+cpus > s.c.CPUs || (s.c.MemoryMiB > 0 && s.mem+mem > s.c.MemoryMiB) || (s.c.Parallel > 0 && s.run >= s.c.Parallel) {
		return nil, false
	}
	s.cpus, s.mem, s.run = s.cpus+cpus, s.mem+mem, s.run+1
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.cpus, s.mem, s.run = s.cpus-cpus, s.mem-mem, s.run-1
			s.mu.Unlock()
		})
	}, true
}
