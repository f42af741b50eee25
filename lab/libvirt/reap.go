package libvirt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/internal/owner"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/simnet"
)

// Orphan is something a firstboot process made in the lab and left behind
// when it ended without cleaning up (killed, out of memory, its SSH session
// closed): a machine (with its overlay files), a network, redirect rules.
// Responders, captures and libvirt connections live inside the process and
// end with it; its machines' QEMU processes end with its connection (they
// are started with autodestroy). What remains are definitions, networks,
// rules and files, which the next firstboot reaps.
type Orphan struct {
	// Kind is "machine", "network" or "redirect rules".
	Kind string `json:"kind"`
	// Name is the domain or network name, or the bridge of the rules.
	Name string `json:"name"`
	// Owner is the process that made it ("pid=…,start=…"); empty when no
	// owner was recorded (older firstboot versions).
	Owner string `json:"owner,omitempty"`
	// Files are files that go with it (a machine's overlays).
	Files []string `json:"files,omitempty"`
	// Rules counts the redirect rules.
	Rules int `json:"rules,omitempty"`
	// Reaped is when it was removed; zero when it was only found.
	Reaped time.Time `json:"reaped,omitzero"`
	// Error says why it could not be removed.
	Error string `json:"error,omitempty"`
}

func (o Orphan) String() string {
	s := o.Kind + " " + o.Name
	if o.Rules > 0 {
		s += fmt.Sprintf(" (%d rules)", o.Rules)
	}
	if o.Owner != "" {
		s += " of " + o.Owner
	} else {
		s += " of an older firstboot"
	}
	if len(o.Files) > 0 {
		s += " with " + strings.Join(o.Files, ", ")
	}
	if o.Error != "" {
		s += ": " + o.Error
	}
	return s
}

// labObject is a firstboot domain or network and who made it.
type labObject struct {
	kind  string // "machine" or "network"
	name  string
	owner owner.Owner
	known bool     // an owner is recorded
	files []string // a machine's files (overlays, a probe's directory)
	dom   golibvirt.Domain
	net   golibvirt.Network
}

// labObjects lists firstboot's domains (running or not) and networks.
func (l *Lab) labObjects(ctx context.Context) ([]labObject, error) {
	doms, _, err := call2(ctx, "list domains", func() ([]golibvirt.Domain, uint32, error) {
		return l.conn.ConnectListAllDomains(1, 0)
	})
	if err != nil {
		return nil, err
	}
	var objs []labObject
	for _, d := range doms {
		if !strings.HasPrefix(d.Name, Prefix) {
			continue
		}
		o := labObject{kind: "machine", name: d.Name, dom: d}
		x, err := call(ctx, "XML of "+d.Name, func() (string, error) { return l.conn.DomainGetXMLDesc(d, 0) })
		if err != nil {
			if isNotFound(err) {
				continue // removed meanwhile
			}
			return nil, err
		}
		var def libvirtxml.Domain
		if def.Unmarshal(x) == nil {
			o.owner, o.files, o.known = domainOwner(&def)
		}
		objs = append(objs, o)
	}
	nets, _, err := call2(ctx, "list networks", func() ([]golibvirt.Network, uint32, error) {
		return l.conn.ConnectListAllNetworks(1, 0)
	})
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if !strings.HasPrefix(n.Name, Prefix) {
			continue
		}
		o := labObject{kind: "network", name: n.Name, net: n}
		x, err := call(ctx, "network XML", func() (string, error) { return l.conn.NetworkGetXMLDesc(n, 0) })
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return nil, err
		}
		var def libvirtxml.Network
		if def.Unmarshal(x) == nil {
			o.owner, o.known = networkOwner(&def)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// orphaned: the object's owner is recorded and has ended. Reap removes only
// these, so a live process's machine or network is never touched, whichever
// firstboot version made it.
func orphaned(o labObject) bool { return o.known && o.owner.Gone() }

// notLive: everything but what a live process owns. Used where firstboot
// cleans up the whole lab (fresh daemons, the last Down): objects whose
// owner is unknown go too, as they always did.
func notLive(o labObject) bool { return !o.known || o.owner.Gone() }

// Reap removes what firstboot processes that have ended left in the lab:
// their machines (stopped, undefined, overlays removed), their networks and
// their redirect rules. It changes nothing that belongs to a live process.
// Failures are reported in each Orphan and joined in the error.
func (l *Lab) Reap(ctx context.Context) ([]Orphan, error) {
	return l.sweep(ctx, orphaned, true)
}

// Orphans lists what Reap would remove, changing nothing.
func (l *Lab) Orphans(ctx context.Context) ([]Orphan, error) {
	return l.sweep(ctx, orphaned, false)
}

// sweep finds the objects pick selects and, with remove, removes them.
func (l *Lab) sweep(ctx context.Context, pick func(labObject) bool, remove bool) ([]Orphan, error) {
	objs, err := l.labObjects(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: looking for orphans: %w", err)
	}
	var out []Orphan
	var errs []error
	add := func(o labObject, files []string, err error) {
		or := Orphan{Kind: o.kind, Name: o.name, Files: files}
		if o.known {
			or.Owner = o.owner.String()
		}
		if remove {
			or.Reaped = time.Now().UTC()
		}
		if err != nil {
			or.Error, or.Reaped = err.Error(), time.Time{}
			errs = append(errs, err)
		}
		out = append(out, or)
	}
	// Machines first: they hold their networks' ports.
	for _, o := range objs {
		if o.kind != "machine" || !pick(o) {
			continue
		}
		var files []string
		for _, f := range o.files {
			if _, err := os.Lstat(f); err == nil && removableFile(f) {
				files = append(files, f)
			}
		}
		var err error
		if remove {
			var ferrs []error
			err = l.removeDomain(ctx, o.dom, func() {
				for _, f := range files {
					ferrs = append(ferrs, os.RemoveAll(f))
				}
			})
			err = errors.Join(append(ferrs, err)...)
		}
		add(o, files, err)
	}
	// Networks and rules under the subnet lock: no new network can take a
	// removed one's bridge name before its rules are gone.
	if remove {
		unlock, err := lockFile(ctx, subnetLock)
		if err != nil {
			return out, errors.Join(append(errs, err)...)
		}
		defer unlock()
	}
	for _, o := range objs {
		if o.kind != "network" || !pick(o) {
			continue
		}
		var err error
		if remove {
			err = l.removeNetwork(ctx, o.net)
		}
		add(o, nil, err)
	}
	if strings.Contains(l.netns, "/") || l.netns == "" {
		// An external libvirtd's namespace has no name for `ip netns exec`;
		// simulated networks (the only ones with rules) need the lab's own.
		return out, errors.Join(errs...)
	}
	find := simnet.FindStaleRedirects
	if remove {
		find = simnet.ReapRedirects
	}
	rules, err := find(ctx, l.netns)
	for _, r := range rules {
		out = append(out, Orphan{Kind: "redirect rules", Name: r.Bridge, Owner: r.Owner, Rules: r.Rules, Reaped: reapedAt(remove)})
	}
	if err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

func reapedAt(remove bool) time.Time {
	if remove {
		return time.Now().UTC()
	}
	return time.Time{}
}

// reapOnUp reaps at Up and keeps a record: a failure to remove an orphan
// is logged, never a reason to refuse the lab.
func (l *Lab) reapOnUp(ctx context.Context, pick func(labObject) bool) {
	reaped, err := l.sweep(ctx, pick, true)
	for _, o := range reaped {
		l.log.Info("lab: reaped what a firstboot that ended without cleaning up left", "orphan", o.String())
	}
	if err != nil {
		l.log.Warn("lab: could not remove everything a killed firstboot left", "err", err)
	}
	l.mu.Lock()
	l.reaped = append(l.reaped, reaped...)
	l.mu.Unlock()
	if err := appendReapLog(l.cfg.StateDir, reaped); err != nil {
		l.log.Warn("lab: recording what was reaped", "err", err)
	}
}

// Reaped is what Up removed because a firstboot that ended had left it.
func (l *Lab) Reaped() []Orphan {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Orphan(nil), l.reaped...)
}

// reapLogName is the record of what was reaped, in the state directory, one
// JSON object per line; `firstboot lab status` shows its end.
const reapLogName = "reaped.jsonl"

// reapLogKeep is how many records the log keeps.
const reapLogKeep = 200

func appendReapLog(stateDir string, reaped []Orphan) error {
	if len(reaped) == 0 || stateDir == "" {
		return nil
	}
	unlock, err := lockFile(context.Background(), filepath.Join(stateDir, ".reaped.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	old, err := ReapLog(stateDir, reapLogKeep)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, o := range append(old, reaped...)[max(0, len(old)+len(reaped)-reapLogKeep):] {
		if err := enc.Encode(o); err != nil {
			return err
		}
	}
	tmp := filepath.Join(stateDir, reapLogName+".tmp")
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(stateDir, reapLogName))
}

// ReapLog returns the last n records of what was reaped (oldest first).
func ReapLog(stateDir string, n int) ([]Orphan, error) {
	f, err := os.Open(filepath.Join(stateDir, reapLogName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Orphan
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var o Orphan
		if json.Unmarshal(sc.Bytes(), &o) == nil {
			out = append(out, o)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	return out[max(0, len(out)-n):], nil
}

// FindOrphans connects to the lab's libvirtd, if one answers, and lists what
// firstboot processes that ended left there, without changing anything (for
// `firstboot lab status`).
func FindOrphans(ctx context.Context, cfg lab.Config) ([]Orphan, error) {
	sock := DefaultSocket
	if cfg.LibvirtURI != "" {
		var err error
		if sock, err = socketFromURI(cfg.LibvirtURI); err != nil {
			return nil, err
		}
	}
	if !socketAnswers(sock) {
		return nil, nil
	}
	l := &Lab{cfg: cfg, log: discardLogger(), socket: sock, machines: map[string]*Machine{}}
	if pid, err := peerPID(sock); err == nil {
		l.netns = fmt.Sprintf("/proc/%d/ns/net", pid)
		if ns, err := firstbootLabNetns(sock); err == nil {
			l.netns = ns
		}
	}
	if err := l.connect(ctx); err != nil {
		return nil, err
	}
	defer l.Close()
	return l.Orphans(ctx)
}
