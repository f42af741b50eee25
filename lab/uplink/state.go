package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/firstboot/firstboot/internal/fsutil"
	"github.com/firstboot/firstboot/lab/netns"
)

// Changes several runs share, and the leftovers of runs that died.

// lockPath serialises uplink set-up and teardown across firstboot processes.
const lockPath = "/run/lock/firstboot-uplink.lock"

// stateDir holds what must be restored when the last run using it ends
// (tmpfs: a reboot resets the kernel settings too).
const stateDir = "/run/firstboot/uplink"

func lock(ctx context.Context) (func(), error) { return fsutil.LockFile(ctx, lockPath) }

// forwarding is the state of one interface's IPv4 forwarding that routed runs
// switched on: the value to restore and the runs (host veths) still using it.
type forwarding struct {
	Original string   `json:"original"`
	Holders  []string `json:"holders"`
}

func forwardingPath(iface string) string {
	id, _ := netns.ID("")
	return filepath.Join(stateDir, fmt.Sprintf("forwarding-%d-%s.json", id, iface))
}

// acquireForwarding switches IPv4 forwarding on for iface on behalf of holder,
// remembering the value to restore; an interface already forwarding (the
// host forwards anyway) is left alone and nothing is recorded. The caller
// holds the lock.
func acquireForwarding(iface, holder string) error {
	path := forwardingPath(iface)
	st, err := readForwarding(path)
	if err != nil {
		return err
	}
	if st == nil {
		cur, err := readConf("ipv4", iface, "forwarding")
		if err != nil {
			return err
		}
		if cur == "1" {
			return nil
		}
		st = &forwarding{Original: cur}
	}
	if !slices.Contains(st.Holders, holder) {
		st.Holders = append(st.Holders, holder)
	}
	if err := saveForwarding(path, st); err != nil {
		return err
	}
	return writeConf("ipv4", iface, "forwarding", "1")
}

// releaseForwarding drops holder (and holders whose veth is gone); the last
// one out restores the original value. The caller holds the lock.
func releaseForwarding(iface, holder string) error {
	path := forwardingPath(iface)
	st, err := readForwarding(path)
	if err != nil || st == nil {
		return err
	}
	ls, err := links("")
	if err != nil {
		return err
	}
	st.Holders = slices.DeleteFunc(st.Holders, func(h string) bool {
		_, alive := byName(ls, h)
		return h == holder || !alive
	})
	if len(st.Holders) > 0 {
		return saveForwarding(path, st)
	}
	var errs []error
	if _, err := os.Stat(confPath("ipv4", iface, "forwarding")); err == nil {
		errs = append(errs, writeConf("ipv4", iface, "forwarding", st.Original))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func readForwarding(path string) (*forwarding, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("uplink state: %w", err)
	}
	var st forwarding
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("uplink state %s: %w (remove it; the interface's forwarding may need resetting by hand)", path, err)
	}
	return &st, nil
}

func saveForwarding(path string, st *forwarding) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("uplink state: %w", err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(b, '\n'), 0o644)
}

// Leftovers are what a firstboot that died left in the namespace it ran in:
// veths whose owner is gone, chains whose veth is gone, forwarding held only
// by vanished veths.
type Leftovers struct {
	Veths  []string // host ends of veths whose owner process has ended
	Chains []string // iptables chains ("filter/FBU-…", "nat/FBU-…") without their veth
	// Forwarding lists interfaces whose forwarding firstboot switched on for
	// runs that no longer exist.
	Forwarding []string
}

// Empty reports whether nothing is left over.
func (l Leftovers) Empty() bool {
	return len(l.Veths)+len(l.Chains)+len(l.Forwarding) == 0
}

// FindLeftovers looks for what dead runs left in firstboot's namespace
// (doctor shows them; the next routed or bridged run removes them).
func FindLeftovers(ctx context.Context) (Leftovers, error) {
	var lo Leftovers
	ls, err := links("")
	if err != nil {
		return lo, err
	}
	alive := map[string]bool{}
	for _, l := range ls {
		if !strings.HasPrefix(l.Name, vethPrefix) {
			continue
		}
		if pid, ok := ownerPID(l.Alias); ok && !processAlive(pid) {
			lo.Veths = append(lo.Veths, l.Name)
			continue
		}
		alive[l.Name] = true
	}
	for _, table := range []string{"filter", "nat"} {
		chains, err := ourChains(ctx, table)
		if err != nil {
			return lo, err
		}
		for _, c := range chains {
			if !alive[hostVethOfChain(c)] {
				lo.Chains = append(lo.Chains, table+"/"+c)
			}
		}
	}
	pre := strings.TrimSuffix(forwardingPath(""), ".json") // …/forwarding-<netns>-
	files, _ := filepath.Glob(forwardingPath("*"))
	for _, f := range files {
		st, err := readForwarding(f)
		if err != nil || st == nil {
			continue
		}
		if !slices.ContainsFunc(st.Holders, func(h string) bool { return alive[h] }) {
			iface := strings.TrimSuffix(strings.TrimPrefix(f, pre), ".json")
			lo.Forwarding = append(lo.Forwarding, iface)
		}
	}
	return lo, nil
}

// removeStale removes leftovers of dead runs. The caller holds the lock.
func removeStale(ctx context.Context) error {
	lo, err := FindLeftovers(ctx)
	if err != nil || lo.Empty() {
		return err
	}
	var errs []error
	for _, v := range lo.Veths {
		errs = append(errs, run(ctx, "ip", "link", "del", v))
	}
	for _, tc := range lo.Chains {
		table, chain, _ := strings.Cut(tc, "/")
		errs = append(errs, removeChain(ctx, table, chain))
	}
	for _, iface := range lo.Forwarding {
		errs = append(errs, releaseForwarding(iface, ""))
	}
	return errors.Join(errs...)
}

// ownerPID reads the owner's pid from a veth's ifalias.
func ownerPID(alias string) (int, bool) {
	rest, ok := strings.CutPrefix(alias, aliasPrefix)
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.Fields(rest + " ")[0])
	return pid, err == nil && pid > 0
}

// processAlive reports whether pid is a live (not zombie) process.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
