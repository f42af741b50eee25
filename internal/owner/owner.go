// Package owner names the firstboot process that made something meant to
// live only as long as that process: a lab machine or network, a redirect
// rule, a run directory being written. A later firstboot reads the owner back
// and tells a live process's things (never touched) from what a killed one
// left behind (reaped, or marked).
//
// A process id alone is not enough: pids are recycled, so the owner also
// records the process's start time (clock ticks after boot, field 22 of
// /proc/PID/stat), the boot it ran in and the host.
package owner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Owner identifies a process on a host, for as long as the host runs.
type Owner struct {
	PID int `json:"pid"`
	// Start is the process's start time in clock ticks after boot; 0 when
	// unknown (things made by firstboot versions that recorded the pid only).
	Start uint64 `json:"start,omitempty"`
	// Boot is the kernel's boot id (/proc/sys/kernel/random/boot_id).
	Boot string `json:"boot_id,omitempty"`
	// Host is the host name: an owner on another host (a runs directory on a
	// shared disk) cannot be checked, so it is never taken for gone.
	Host string `json:"host,omitempty"`
}

// Self is the calling process.
func Self() Owner {
	o, err := Of(os.Getpid())
	if err != nil {
		// /proc/self is always readable; should it not be, the pid alone
		// still names the process (as older firstboot versions did).
		return Owner{PID: os.Getpid(), Boot: bootID(), Host: hostname()}
	}
	return o
}

// Of is the owner record of a running process.
func Of(pid int) (Owner, error) {
	_, start, err := stat(pid)
	if err != nil {
		return Owner{}, err
	}
	return Owner{PID: pid, Start: start, Boot: bootID(), Host: hostname()}, nil
}

// IsZero reports whether o names no process.
func (o Owner) IsZero() bool { return o.PID <= 0 }

// Is reports whether o and p are the same process.
func (o Owner) Is(p Owner) bool {
	return o.PID == p.PID && o.Start == p.Start && o.Boot == p.Boot && o.Host == p.Host
}

// Gone reports whether the owner has certainly ended: its pid is free, a
// zombie, or taken by a process that started at another time, or the host
// has rebooted since. An owner that cannot be checked (none recorded, or on
// another host) is not gone: what it made is left alone.
func (o Owner) Gone() bool {
	if o.IsZero() || (o.Host != "" && o.Host != hostname()) {
		return false
	}
	if o.Boot != "" && o.Boot != bootID() {
		return true
	}
	state, start, err := stat(o.PID)
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	if state == 'Z' || state == 'X' {
		return true
	}
	return o.Start != 0 && start != o.Start
}

// String is the owner in one word (no spaces), as Parse reads it back:
// "pid=4242,start=1234567,boot=…,host=lab1".
func (o Owner) String() string {
	s := "pid=" + strconv.Itoa(o.PID)
	if o.Start != 0 {
		s += ",start=" + strconv.FormatUint(o.Start, 10)
	}
	if o.Boot != "" {
		s += ",boot=" + o.Boot
	}
	if o.Host != "" {
		s += ",host=" + o.Host
	}
	return s
}

// Parse reads an owner written by String.
func Parse(s string) (Owner, error) {
	var o Owner
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "pid":
			o.PID, err = strconv.Atoi(v)
		case "start":
			o.Start, err = strconv.ParseUint(v, 10, 64)
		case "boot":
			o.Boot = v
		case "host":
			o.Host = v
		default:
			err = fmt.Errorf("unknown field %q", k)
		}
		if err != nil {
			return Owner{}, fmt.Errorf("owner %q: %w", s, err)
		}
	}
	if o.IsZero() {
		return Owner{}, fmt.Errorf("owner %q: no pid", s)
	}
	return o, nil
}

// stat reads a process's state letter and start time from /proc/PID/stat.
func stat(pid int) (state byte, start uint64, err error) {
	if pid <= 0 {
		return 0, 0, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// "pid (comm) state ppid …": comm may hold spaces and parentheses, so
	// the fields are counted from the last ')'. State is field 3, starttime
	// field 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return f[0][0], start, nil
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return string(bytes.TrimSpace(b))
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
