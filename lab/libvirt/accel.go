package libvirt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/firstboot/firstboot/lab"
)

// AccelResult is the outcome of the KVM probe.
type AccelResult struct {
	Accel  string        // "kvm" or "tcg"
	Reason string        // why, for doctor and the manifest
	Took   time.Duration // how long the probe ran
}

type accelProbe struct{ AccelResult }

// kvmProbeWindow is how long a probe kernel gets to print its banner under
// KVM; a working KVM prints it well under a second after start.
const kvmProbeWindow = 15 * time.Second

// resolveAccel turns "auto", "kvm" or "tcg" into the accelerator to use.
func (l *Lab) resolveAccel(ctx context.Context, spec lab.MachineSpec) (string, error) {
	switch spec.Accel {
	case "tcg":
		return "tcg", nil
	case "kvm":
		return "kvm", nil
	case "auto", "":
	default:
		return "", fmt.Errorf("machine %s: accel %q: want auto, kvm or tcg", spec.Name, spec.Accel)
	}
	kernel := l.cfg.ProbeKernel
	if kernel == "" {
		kernel = spec.Kernel
	}
	r, err := l.ProbeKVM(ctx, kernel)
	if err != nil {
		return "", err
	}
	return r.Accel, nil
}

// ProbeKVM decides honestly whether KVM works: /dev/kvm must open, and a
// stock kernel booted under KVM must print its banner on the serial console
// within kvmProbeWindow (on some hosts /dev/kvm exists but only runs
// specially built kernels). Without a kernel to try, it falls back to TCG.
// The answer belongs to the host, not to a guest image: it is kept in
// StateDir/accel.json under a key of what decides it (see hostKey), so any
// later run on the same host, of any image, reuses it.
func (l *Lab) ProbeKVM(ctx context.Context, kernel string) (AccelResult, error) {
	l.mu.Lock()
	if l.kvm != nil {
		r := l.kvm.AccelResult
		l.mu.Unlock()
		return r, nil
	}
	l.mu.Unlock()
	key := hostKey()
	if r, ok := l.loadProbe(key); ok {
		l.mu.Lock()
		l.kvm = &accelProbe{r}
		l.mu.Unlock()
		return r, nil
	}
	start := time.Now()
	r, decided, err := l.probeKVM(ctx, kernel)
	if err != nil {
		return r, err
	}
	r.Took = time.Since(start)
	if decided {
		l.saveProbe(key, r)
	}
	l.log.Info("lab: accelerator", "accel", r.Accel, "reason", r.Reason, "probe", r.Took.Round(time.Millisecond))
	l.mu.Lock()
	l.kvm = &accelProbe{r}
	l.mu.Unlock()
	return r, nil
}

// probeKVM runs the probe; decided is false when the host was not really
// asked (no kernel to boot), so the answer must not be kept.
func (l *Lab) probeKVM(ctx context.Context, kernel string) (r AccelResult, decided bool, err error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return AccelResult{Accel: "tcg", Reason: "/dev/kvm not usable: " + err.Error()}, true, nil
	}
	f.Close()
	if kernel == "" {
		return AccelResult{Accel: "tcg", Reason: "/dev/kvm present but no kernel to probe it with (build the test guest: firstboot image build)"}, false, nil
	}
	printed, err := l.bootsBanner(ctx, kernel, "kvm", kvmProbeWindow)
	if err != nil {
		var se startError
		if errors.As(err, &se) {
			return AccelResult{Accel: "tcg", Reason: "KVM domain did not start: " + se.Error()}, true, nil
		}
		return AccelResult{}, false, err
	}
	if printed {
		return AccelResult{Accel: "kvm", Reason: "a kernel booted under KVM printed its banner"}, true, nil
	}
	return AccelResult{Accel: "tcg", Reason: fmt.Sprintf("/dev/kvm present but a kernel under KVM printed nothing in %s (paravirtual or broken KVM)", kvmProbeWindow)}, true, nil
}

// startError marks a probe domain that libvirt or QEMU refused to start.
type startError struct{ error }

// bootsBanner boots kernel briefly on accel ("kvm" or "tcg"), without disk
// or network, and reports whether it printed its "Linux version" banner on
// the serial console within window.
func (l *Lab) bootsBanner(ctx context.Context, kernel, accel string, window time.Duration) (bool, error) {
	dir, err := os.MkdirTemp("", "firstboot-kvmprobe-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	spec := lab.MachineSpec{
		Name:       fmt.Sprintf("%s%sprobe-%d", Prefix, accel, os.Getpid()),
		CPUs:       1,
		MemoryMiB:  256,
		Firmware:   "bios",
		Kernel:     kernel,
		Cmdline:    "console=ttyS0 earlyprintk=serial panic=-1",
		ConsoleLog: filepath.Join(dir, "console.log"),
		RunDir:     dir,
		MAC:        "52:54:00:00:00:01",
	}
	x, err := DomainXML(spec, "", accel, "")
	if err != nil {
		return false, err
	}
	l.own(spec.Name)
	dom, err := call(ctx, "define probe", func() (golibvirt.Domain, error) { return l.conn.DomainDefineXML(x) })
	if err != nil {
		// libvirt refuses a domain type its QEMU probe found unusable.
		return false, startError{err}
	}
	defer func() {
		tctx, cancel := teardownContext(ctx)
		defer cancel()
		_ = l.removeDomain(tctx, dom)
	}()
	if _, err := call(ctx, "start probe", func() (golibvirt.Domain, error) { return l.conn.DomainCreateWithFlags(dom, 0) }); err != nil {
		return false, startError{err}
	}
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(spec.ConsoleLog); bytes.Contains(b, []byte("Linux version")) {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return false, nil
}

// The probe costs a boot (~15 s when KVM does not work), so its result is
// kept in StateDir/accel.json for as long as what decides it is the same.
type probeRecord struct {
	Key    string      `json:"key"`
	Result AccelResult `json:"result"`
}

func (l *Lab) probeCachePath() string {
	if l.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(l.cfg.StateDir, "accel.json")
}

func (l *Lab) loadProbe(key string) (AccelResult, bool) {
	p := l.probeCachePath()
	if p == "" {
		return AccelResult{}, false
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return AccelResult{}, false
	}
	var rec probeRecord
	if json.Unmarshal(b, &rec) != nil || rec.Key != key || rec.Result.Accel == "" {
		return AccelResult{}, false
	}
	rec.Result.Reason += " (cached " + p + ")"
	return rec.Result, true
}

func (l *Lab) saveProbe(key string, r AccelResult) {
	p := l.probeCachePath()
	if p == "" {
		return
	}
	b, err := json.Marshal(probeRecord{Key: key, Result: r})
	if err == nil {
		_ = os.WriteFile(p, b, 0o644)
	}
}
