package scenarios

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/internal/fsutil"
	"github.com/firstboot/firstboot/internal/owner"
	"github.com/firstboot/firstboot/internal/testhook"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/capture"
	"github.com/firstboot/firstboot/lab/guest"
	"github.com/firstboot/firstboot/lab/labca"
	"github.com/firstboot/firstboot/lab/libvirt"
	"github.com/firstboot/firstboot/lab/netns"
	"github.com/firstboot/firstboot/lab/osimage"
	"github.com/firstboot/firstboot/lab/simnet"
	"github.com/firstboot/firstboot/lab/tlskeys"
	"github.com/firstboot/firstboot/lab/vnc"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/rundir"
)

// RunConfig is what a run needs beyond the scenario.
type RunConfig struct {
	Scenario   *Scenario
	RunsDir    string
	ImageCache string
	Lab        lab.Config
	// Window overrides the scenario's capture window when set.
	Window time.Duration
	// Version is firstboot's version, recorded in the manifest and the pcapng.
	Version string
	// Pending is what the caller does with the run directory once Execute
	// returns ("analysis"): the final manifest says so, and the caller
	// clears it when done, so that a firstboot killed meanwhile is noticed
	// (results/rundir).
	Pending string
	Logger  *slog.Logger
	// Progress, when set, follows the run for a live display.
	Progress *Progress
	// Network overrides the scenario's network mode when set; Bridge and
	// Egress are the host's side of the real-internet modes (the host bridge,
	// the interface routed traffic leaves by) and win over the scenario's.
	Network, Bridge, Egress string
	// InterceptRoots are PEM files of extra roots the intercepting proxy
	// trusts for real servers (besides the system's).
	InterceptRoots []string

	// Display serves the machine's screen by VNC on this local address
	// (host:port) so a person can watch or take over; "" serves none.
	Display string
	// Manual: a person drives the machine and makes the steps (RunManual);
	// the scenario has none.
	Manual bool
	// Record writes what the person does through the display into the run
	// directory's recording/ (a manual run; needs Display).
	Record bool
	// Terminal is where the person types (Enter continues a pause or ends a
	// manual step); nil when there is none.
	Terminal io.Reader
	// Prompt receives what the run tells the person; nil discards.
	Prompt io.Writer
	// Campaign, when set, is recorded in the manifest: the run is a job of a campaign.
	Campaign *manifest.Campaign
}

// RecordingDir is where a recorded run keeps its recording.
const RecordingDir = "recording"

// Run is one finished (or interrupted) run.
type Run struct {
	Dir      string
	Manifest *manifest.Manifest
}

// ImageError says which image file is missing and how to get it.
type ImageError struct {
	Path   string
	Obtain string
	Err    error
}

func (e *ImageError) Error() string {
	msg := fmt.Sprintf("image %s: %v", e.Path, e.Err)
	if e.Obtain != "" {
		msg += "\n  how to obtain it: " + e.Obtain
	}
	return msg
}
func (e *ImageError) Unwrap() error { return e.Err }

// NewRunID returns an id that sorts by start time and is unique.
func NewRunID(name string, now time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + name + "-" + hex.EncodeToString(b[:])
}

// Execute performs a whole run: lab up, network, responders, machine (paused),
// capture, resume, steps, and teardown of everything it brought up. The run
// directory and the capture survive any failure; the manifest says why a run
// is incomplete. The returned Run is non-nil once the run directory exists.
//
// First it marks the runs a killed firstboot left "running" in the runs
// directory (rundir.MarkAbandoned); bringing the lab up reaps what such a
// process left in the lab.
func Execute(ctx context.Context, cfg RunConfig) (*Run, error) {
	s := cfg.Scenario
	markAbandoned(ctx, cfg.RunsDir, cfg.Logger)
	now := func() time.Time { return time.Now().UTC() }
	id := NewRunID(s.Name, now())
	dir := filepath.Join(cfg.RunsDir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the run directory: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "firstboot.log"))
	if err != nil {
		return nil, fmt.Errorf("creating the run log: %w", err)
	}
	defer logFile.Close()
	var handlers []slog.Handler
	handlers = append(handlers, slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Logger != nil {
		handlers = append(handlers, cfg.Logger.Handler())
	}
	log := slog.New(slog.NewMultiHandler(handlers...)).With("run", id)

	cfg.Progress.started(now())
	r := &runner{cfg: cfg, s: s, dir: dir, log: log, now: now}
	r.net = effectiveNetwork(s.Network, cfg)
	self := owner.Self()
	r.m = &manifest.Manifest{
		RunID:  id,
		Status: manifest.StatusRunning,
		Owner:  &self,
		Scenario: manifest.Scenario{Name: s.Name, File: s.File, SHA256: s.SHA256, FirstParty: s.FirstParty,
			OS: manifest.OS{Family: s.OS.Family, Product: s.OS.Product, Release: s.OS.Release, Build: s.OS.Build}},
		Tools:    manifest.Tools{Firstboot: cfg.Version},
		Host:     hostFacts(),
		Network:  manifest.Network{Mode: r.net.Mode},
		Machine:  manifest.Machine{CPUs: s.Machine.CPUs, MemoryMiB: s.Machine.Memory.MiB(), Firmware: s.Machine.Firmware},
		Campaign: cfg.Campaign,
	}
	r.tl = &Timeline{Now: now, OnChange: func(entries []manifest.Entry) {
		r.mu.Lock()
		r.m.Timeline = entries
		r.mu.Unlock()
		r.save()
	}, OnBegin: r.doing}
	if err := writeScenarioCopy(s, filepath.Join(dir, "scenario.yaml")); err != nil {
		return nil, fmt.Errorf("copying the scenario into the run directory: %w", err)
	}
	r.save()

	runErr := RunSetup(ctx, r.tl, r.setupSteps(), r.body)
	r.finish(ctx, runErr)
	return &Run{Dir: dir, Manifest: r.m}, runErr
}

// runner holds one run's state while the setup steps build it up.
type runner struct {
	cfg RunConfig
	s   *Scenario
	dir string
	log *slog.Logger
	now func() time.Time

	mu sync.Mutex // guards m while the timeline rewrites it
	m  *manifest.Manifest
	tl *Timeline

	spec       lab.MachineSpec
	lab        *libvirt.Lab
	network    *libvirt.Network
	responders *simnet.Responders
	keys       *tlskeys.Log // the responders' or the interceptor's TLS secrets, for tls-keys.log and the capture
	icpt       *interceptRun
	redirect   func(context.Context) error
	machine    *libvirt.Machine
	capture    *capture.Capture
	stoppedBy  string
	watch      *TrafficWatch

	net      Network // the scenario's network with the run's overrides
	up       *uplinkRun
	dhcp     dhcpSeen
	person   *Person
	control  *controlServer
	proxy    *vnc.Proxy
	recorder *vnc.Recorder
}

func (r *runner) save() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := manifest.Write(r.dir, r.m); err != nil {
		r.log.Error("writing the manifest", "err", err)
	}
}

func (r *runner) setupSteps() []SetupStep {
	steps := []SetupStep{
		{Name: "control", Run: r.controlUp, Cleanup: r.controlDown},
		{Name: "image", Run: r.resolveImage},
		{Name: "lab", Run: r.labUp, Cleanup: r.labDown},
		{Name: "network", Run: r.networkUp, Cleanup: r.networkDown},
	}
	realNet := r.net.Mode == string(lab.Routed) || r.net.Mode == string(lab.Bridged)
	if realNet {
		steps = append(steps, SetupStep{Name: "uplink", Run: r.uplinkUp, Cleanup: r.uplinkDown})
		if r.net.InterceptTLS {
			steps = append(steps, SetupStep{Name: "TLS interception", Run: r.interceptUp, Cleanup: r.interceptDown})
		}
	} else {
		steps = append(steps, SetupStep{Name: "responders", Run: r.respondersUp, Cleanup: r.respondersDown})
	}
	steps = append(steps,
		SetupStep{Name: "machine", Run: r.machineUp, Cleanup: r.machineDown},
		SetupStep{Name: "capture", Run: r.captureUp, Cleanup: r.captureDown},
	)
	if realNet {
		// Armed after the capture, so the capture carries the uplink's events.
		steps = append(steps, SetupStep{Name: "uplink watch", Run: r.uplinkWatch, Cleanup: r.uplinkUnwatch})
	}
	if r.cfg.Display != "" {
		steps = append(steps, SetupStep{Name: "display", Run: r.displayUp, Cleanup: r.displayDown})
	}
	for i := range steps {
		run, what := steps[i].Run, "setting up "+steps[i].Name
		steps[i].Run = func(ctx context.Context) error {
			r.cfg.Progress.phase(what)
			return run(ctx)
		}
	}
	return steps
}

// resolveImage finds the files to boot and records their hashes.
func (r *runner) resolveImage(ctx context.Context) error {
	img := r.s.Image
	spec := lab.MachineSpec{
		Name:        "firstboot-" + r.m.RunID,
		CPUs:        r.s.Machine.CPUs,
		MemoryMiB:   r.s.Machine.Memory.MiB(),
		Firmware:    r.s.Machine.Firmware,
		Accel:       r.cfg.Lab.Accel,
		NICModel:    r.s.Machine.NIC,
		DiskBus:     r.s.Machine.DiskBus,
		Video:       r.s.Machine.Video,
		TPM:         r.s.Machine.TPM,
		CPUModel:    r.s.Machine.CPUModel,
		CPUFeatures: r.s.Machine.CPUFeatures,
		RunDir:      r.dir,
		Display:     r.cfg.Display != "",
	}
	var files []string
	switch {
	case img.Builtin == "testguest":
		g, err := guest.Load(r.cfg.ImageCache)
		if err != nil {
			return &ImageError{Path: filepath.Join(r.cfg.ImageCache, "testguest"), Obtain: "firstboot image build testguest", Err: err}
		}
		spec.Kernel, spec.Initrd, spec.Cmdline = g.KernelFor(spec.Firmware == "uefi", spec.TPM), g.Initrd, g.Cmdline
		files = []string{spec.Kernel, g.Initrd}
		r.m.Image.Name = "testguest"
		if img.TrustLabCA {
			initrd, name, err := r.trusting(g.Initrd, g.InitrdSHA256, ".img", func(dst string, ca []byte) error {
				return labca.IntoInitrd(g.Initrd, dst, ca) // an extra archive after the image's
			})
			if err != nil {
				return err
			}
			spec.Initrd, r.m.Image.Name = initrd, r.m.Image.Name+"+"+name
		}
	case img.Builtin != "":
		d, err := osimage.Load(r.cfg.ImageCache, img.Builtin)
		if err != nil {
			return &ImageError{Path: filepath.Join(r.cfg.ImageCache, img.Builtin), Obtain: "firstboot image build " + img.Builtin, Err: err}
		}
		spec = d.MachineSpec(spec)
		files = []string{spec.Kernel, spec.Initrd, spec.Disk}
		r.m.Image.Name = img.Builtin
		if img.TrustLabCA {
			disk, name, err := r.trusting(d.Disk, d.Manifest.Files[filepath.Base(d.Disk)].SHA256, ".qcow2", func(dst string, ca []byte) error {
				return labca.IntoDisk(ctx, d.Disk, dst, ca)
			})
			if err != nil {
				return err
			}
			spec.Disk, r.m.Image.Name = disk, img.Builtin+"+"+name
		}
	case img.Kind == "kernel":
		spec.Kernel, spec.Initrd, spec.Cmdline = r.s.ResolvePath(img.Kernel), r.s.ResolvePath(img.Initrd), img.Cmdline
		files = []string{spec.Kernel}
		if spec.Initrd != "" {
			files = append(files, spec.Initrd)
		}
	case img.Kind == "disk":
		spec.Disk = r.s.ResolvePath(img.Path)
		files = []string{spec.Disk}
	case img.Kind == "iso":
		spec.ISO = r.s.ResolvePath(img.Path)
		files = []string{spec.ISO}
	}
	for _, m := range img.Media {
		p := r.s.ResolvePath(m.Path)
		files = append(files, p)
		spec.Media = append(spec.Media, lab.Media{Name: m.Name, Kind: m.Kind, Path: p, Ejected: !m.StartsInserted()})
	}
	r.m.Image.Kind = img.Kind
	switch {
	case img.Builtin == "testguest":
		r.m.Image.Kind = "kernel"
	case img.Builtin != "":
		r.m.Image.Kind = "kernel+disk"
	}
	for i, f := range files {
		obtain := img.Obtain
		if i >= len(files)-len(img.Media) && len(img.Media) > 0 {
			obtain = img.Media[i-(len(files)-len(img.Media))].Obtain
		}
		sum, _, err := fsutil.FileSHA256(f)
		if err != nil {
			return &ImageError{Path: f, Obtain: obtain, Err: unwrapPathError(err)}
		}
		if i == 0 && img.SHA256 != "" && sum != img.SHA256 {
			return &ImageError{Path: f, Obtain: obtain, Err: fmt.Errorf("sha256 is %s, the scenario expects %s (a different or damaged image)", sum, img.SHA256)}
		}
		if j := i - (len(files) - len(img.Media)); j >= 0 && img.Media[j].SHA256 != "" && sum != img.Media[j].SHA256 {
			return &ImageError{Path: f, Obtain: obtain, Err: fmt.Errorf("media %s: sha256 is %s, the scenario expects %s (a different or damaged file)", img.Media[j].Name, sum, img.Media[j].SHA256)}
		}
		r.m.Image.Files = append(r.m.Image.Files, f)
		r.m.Image.SHA256 = append(r.m.Image.SHA256, sum)
	}
	if f := r.s.Machine.AppleSMCOSKFile; f != "" {
		osk, err := readOSK(r.s.ResolvePath(f))
		if err != nil {
			return err
		}
		spec.AppleSMCOSK = osk
	}
	r.spec = spec
	r.recordHardware(spec)
	r.save()
	return nil
}

// recordHardware puts the machine's virtual hardware into the manifest.
func (r *runner) recordHardware(spec lab.MachineSpec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mm := &r.m.Machine
	mm.NIC, mm.DiskBus, mm.Video, mm.TPM = spec.NICModel, spec.DiskBus, spec.Video, spec.TPM
	mm.CPUModel, mm.CPUFeatures, mm.AppleSMC = spec.CPUModel, spec.CPUFeatures, spec.AppleSMCOSK != ""
	mm.Media = nil
	for _, m := range spec.Media {
		mm.Media = append(mm.Media, manifest.Media{Name: m.Name, Kind: m.Kind, Inserted: !m.Ejected})
	}
}

// readOSK reads the Apple SMC key: 64 characters, a trailing newline allowed.
func readOSK(path string) (string, error) {
	const obtain = "the OSK is the 64-character string macOS checks in the SMC of Apple hardware; firstboot ships none (see docs/images.md, \"The Apple SMC key\")"
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &ImageError{Path: path, Obtain: obtain, Err: unwrapPathError(err)}
	}
	osk := strings.TrimRight(string(b), "\r\n")
	if len(osk) != 64 {
		return "", &ImageError{Path: path, Obtain: obtain, Err: fmt.Errorf("the Apple SMC key has %d characters, want 64", len(osk))}
	}
	return osk, nil
}

// UnwrapPathError says what went wrong with a file without repeating its
// path (the message names it already): "file not found", or the error.
func UnwrapPathError(err error) error { return unwrapPathError(err) }

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, os.ErrNotExist) {
			return errors.New("file not found")
		}
		return pe.Err
	}
	return err
}

func (r *runner) labUp(ctx context.Context) error {
	testhook.Pause(ctx, r.log, "lab-up")
	cfg := r.cfg.Lab
	cfg.Logger = r.log
	l, err := libvirt.Up(ctx, cfg)
	if err != nil {
		return err
	}
	r.lab = l
	if v, err := l.Versions(ctx); err == nil {
		r.m.Tools.Libvirt, r.m.Tools.QEMU = v.Libvirt, v.QEMU
	}
	return nil
}

func (r *runner) labDown(ctx context.Context) error {
	if r.lab == nil {
		return nil
	}
	// Down also for a lab that shares another run's daemons: their owner
	// may have released them to this run, or ended, and then this run is
	// the last to use them and stops them.
	return r.lab.Down(ctx)
}

func (r *runner) networkUp(ctx context.Context) error {
	spec, err := r.networkSpec()
	if err != nil {
		return err
	}
	n, err := r.lab.CreateNetwork(ctx, spec)
	if err != nil {
		return err
	}
	r.network = n
	r.m.Network = manifest.Network{Mode: r.net.Mode, Name: n.Name(), Bridge: n.Bridge()}
	if n.Subnet().IsValid() {
		r.m.Network.Subnet, r.m.Network.Gateway = n.Subnet().String(), n.Addr().String()
	}
	r.save()
	return nil
}

func (r *runner) networkDown(ctx context.Context) error {
	if r.network == nil {
		return nil
	}
	return r.network.Close(ctx)
}

// labCA is the host's lab CA: the same for every run, so images made to
// trust it keep working.
func (r *runner) labCA() (*simnet.CA, error) {
	return simnet.LoadOrCreateCA(filepath.Join(r.cfg.Lab.StateDir, "ca"))
}

// trusting returns a copy of an image file (sha256 sum) that trusts the
// lab CA, made by mk once per file and CA and kept beside the image cache
// (the cached image itself is never changed), and the CA's name.
func (r *runner) trusting(file, sum, ext string, mk func(dst string, ca []byte) error) (path, name string, err error) {
	ca, err := r.labCA()
	if err != nil {
		return "", "", err
	}
	name = "lab-ca-" + labca.Fingerprint(ca.CertPEM)
	if len(sum) < 16 {
		return "", "", fmt.Errorf("image file %s: no SHA-256 in its manifest: rebuild it with firstboot image build", file)
	}
	dir := filepath.Join(r.cfg.ImageCache, "lab-ca")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, sum[:16]+"-"+name+ext)
	if _, err := os.Stat(path); err == nil {
		return path, name, nil
	}
	r.log.Info("making a copy that trusts the lab CA (once per image file and CA)", "file", file, "copy", path)
	if err := mk(path, ca.CertPEM); err != nil {
		return "", "", err
	}
	pruneTrusting(dir, sum[:16], path)
	return path, name, nil
}

// pruneTrusting removes copies of the same image file made for other CAs
// (a lab state directory made anew, as tests do) once they are a day old:
// a run that started with one has long opened it.
func pruneTrusting(dir, prefix, keep string) {
	old, _ := filepath.Glob(filepath.Join(dir, prefix+"-lab-ca-*"))
	for _, p := range old {
		if st, err := os.Stat(p); err == nil && p != keep && time.Since(st.ModTime()) > 24*time.Hour {
			os.Remove(p)
		}
	}
}

func (r *runner) respondersUp(ctx context.Context) error {
	ca, err := r.labCA()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(r.dir, "responders.jsonl"))
	if err != nil {
		return err
	}
	keys, err := tlskeys.Create(filepath.Join(r.dir, manifest.TLSKeysFile))
	if err != nil {
		logf.Close()
		return err
	}
	ports := simnet.DefaultPorts()
	var resp *simnet.Responders
	// The listeners must live in the lab namespace, on the bridge address.
	err = netns.Do(r.lab.Netns(), func() error {
		var err error
		resp, err = simnet.Start(context.WithoutCancel(ctx), simnet.Config{
			Addr: r.network.Addr(), NamePool: namePool(), Ports: ports, CA: ca, Log: logf, KeyLog: keys,
		})
		return err
	})
	if err != nil {
		logf.Close()
		keys.Close()
		return err
	}
	r.responders = resp
	r.keys = keys
	prevClose := func() error { return errors.Join(logf.Close(), keys.Close()) }
	ports = resp.Addrs()
	if err := simnet.InstallRedirect(ctx, r.lab.Netns(), r.network.Bridge(), r.network.Addr(), ports); err != nil {
		return errors.Join(err, resp.Close(), prevClose())
	}
	r.redirect = func(ctx context.Context) error {
		return errors.Join(simnet.RemoveRedirect(ctx, r.lab.Netns(), r.network.Bridge(), r.network.Addr(), ports), resp.Close(), prevClose())
	}
	return nil
}

func (r *runner) respondersDown(ctx context.Context) error {
	if r.redirect == nil {
		return nil
	}
	return r.redirect(ctx)
}

func (r *runner) machineUp(ctx context.Context) error {
	m, err := r.lab.DefineMachine(ctx, r.spec, r.network)
	if err != nil {
		return err
	}
	r.machine = m
	r.m.Machine.Name = m.Name()
	r.m.Machine.MAC = m.MAC().String()
	r.m.Tools.Accelerator = m.Accel()
	r.save()
	testhook.Pause(ctx, r.log, "machine-defined")
	return nil
}

func (r *runner) machineDown(ctx context.Context) error {
	if r.machine == nil {
		return nil
	}
	return r.machine.Destroy(ctx)
}

func (r *runner) captureUp(ctx context.Context) error {
	tap, err := r.machine.TapName(ctx)
	if err != nil {
		return err
	}
	r.watch = NewTrafficWatch()
	r.watch.OnNewName = r.cfg.Progress.newName
	live := NewLiveDecoder(r.watch)
	live.DHCP = r.dhcp.observe(r.machine.MAC())
	path := filepath.Join(r.dir, "capture.pcapng")
	c, err := capture.Start(ctx, capture.Config{
		Netns:          r.lab.Netns(),
		Iface:          tap,
		Path:           path,
		InterfaceName:  r.machine.Name(),
		SectionComment: fmt.Sprintf("firstboot %s run %s scenario %s machine %s", r.cfg.Version, r.m.RunID, r.s.Name, r.machine.Name()),
		OnPacket: func(data []byte, at time.Time) {
			r.cfg.Progress.packet(len(data))
			live.Packet(data, at)
		},
	})
	if err != nil {
		return err
	}
	r.capture = c
	if r.keys != nil {
		r.keys.SetSink(secretsSink(c))
	}
	r.m.Capture = manifest.Capture{File: "capture.pcapng", Interface: tap, Start: r.now()}
	r.save()
	return nil
}

func (r *runner) captureDown(ctx context.Context) error {
	if r.capture == nil {
		return nil
	}
	if r.keys != nil {
		r.keys.SetSink(nil)
	}
	st, err := r.capture.Stop(ctx)
	if r.keys != nil {
		// Every secret ahead of the packets, so tshark's one pass can
		// decrypt; the capture itself is kept whatever happens here.
		text, kerr := r.keys.Contents()
		if kerr == nil {
			kerr = tlskeys.IntoCapture(filepath.Join(r.dir, r.m.Capture.File), text)
		}
		if kerr != nil {
			r.log.Error("putting the TLS secrets into the capture (tls-keys.log has them)", "err", kerr)
		}
	}
	r.m.Capture.Packets, r.m.Capture.Drops = st.Packets, st.Drops
	r.m.Capture.Received, r.m.Capture.RingFreezes = st.Received, st.RingFreezes
	r.m.Capture.End = r.now()
	if r.stoppedBy == "" {
		r.stoppedBy = "steps-done"
	}
	r.m.Capture.StoppedBy = r.stoppedBy
	r.save()
	return err
}

// namePool gives every name the guest looks up its own address (RFC 2544's
// benchmarking range: never routed on the internet), so connections stay
// attributable to names although one responder answers them all.
func namePool() netip.Prefix { return netip.MustParsePrefix("198.18.0.0/15") }

// errLibvirtLost is the cause when libvirtd goes away mid-run.
var errLibvirtLost = errors.New("lost the connection to libvirtd (it died or was stopped); the capture so far is kept")

// errWindowEnded is the cause when the capture window runs out.
var errWindowEnded = errors.New("the capture window ended")

// body runs the scenario's steps, then keeps capturing until the machine stops
// or the capture window ends, whichever comes first. Steps still running when
// the window ends fail.
func (r *runner) body(ctx context.Context) error {
	window := r.s.Capture.Window.D()
	if r.cfg.Window > 0 {
		window = r.cfg.Window
	}
	ctx, cancel := context.WithTimeoutCause(ctx, window, fmt.Errorf("%w (%s)", errWindowEnded, window))
	defer cancel()
	r.cfg.Progress.window(r.now().Add(window))
	// The cleanups that follow the body take everything down; the window is over.
	defer func() {
		r.cfg.Progress.window(time.Time{})
		r.cfg.Progress.phase("tearing down")
	}()
	// A lost libvirtd ends the run: no lifecycle event would ever come.
	ctx, cancelLost := context.WithCancelCause(ctx)
	defer cancelLost(nil)
	go func() {
		select {
		case <-r.lab.Disconnected():
			cancelLost(errLibvirtLost)
		case <-ctx.Done():
		}
	}()
	env := &Env{
		Machine:  r.machine,
		Start:    r.machine.Resume,
		Mark:     r.capture.Mark,
		Traffic:  r.watch,
		Dir:      r.dir,
		Timeline: r.tl,
		Logger:   r.log,
		Progress: r.cfg.Progress,
		Person:   r.person,
		Recorder: r.recorder,
	}
	stopIdle := r.hear(env)
	defer stopIdle()
	var err error
	if r.cfg.Manual || r.cfg.Record {
		err = RunManual(ctx, env)
	} else {
		err = RunSteps(ctx, r.s, env)
	}
	if err == nil {
		r.doing("capture", r.now())
		r.cfg.Progress.phase("steps done; capturing until the machine stops or the window ends")
		r.log.Info("steps done; capturing until the machine stops or the window ends")
		select {
		case <-r.machine.Stopped():
		case <-ctx.Done():
		}
	}
	switch {
	case errors.Is(context.Cause(ctx), errWindowEnded):
		r.stoppedBy = "window"
	case errors.Is(context.Cause(ctx), errLibvirtLost):
		r.stoppedBy = "libvirtd-lost"
		if err == nil {
			err = errLibvirtLost
		}
	case ctx.Err() != nil:
		r.stoppedBy = "interrupted"
	default:
		r.stoppedBy = "machine-stopped"
	}
	if ip, ierr := r.leaseIP(); ierr == nil {
		r.m.Machine.IP = ip
	}
	if err == nil && ctx.Err() != nil && !errors.Is(context.Cause(ctx), errWindowEnded) {
		return context.Cause(ctx)
	}
	return err
}

func (r *runner) leaseIP() (string, error) {
	// The lease the capture saw: the only source in bridged mode, where the
	// upstream network's DHCP server gave it.
	if ack := r.dhcp.ack(); ack != nil {
		return ack.YourIP.String(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ip, err := r.machine.IP(ctx)
	if err != nil {
		return "", err
	}
	return ip.String(), nil
}

// finish writes the final manifest: complete, or incomplete with the reason.
func (r *runner) finish(ctx context.Context, err error) {
	r.mu.Lock()
	switch {
	case err == nil:
		r.m.Status = manifest.StatusComplete
	default:
		r.m.Status = manifest.StatusIncomplete
		r.m.Reason = err.Error()
		if ctx.Err() != nil {
			r.m.Reason = "interrupted: " + err.Error()
		}
		var se *StepError
		if errors.As(err, &se) {
			r.m.FailedStep = se.Step
		}
	}
	r.m.Files = manifest.ListFiles(r.dir)
	r.m.Doing = nil
	if r.cfg.Pending != "" {
		r.m.Doing = &manifest.Activity{What: r.cfg.Pending, Since: r.now()}
	}
	r.mu.Unlock()
	r.save()
}

// doing records in the manifest what the run is doing now, so that a
// firstboot killed there can be told where (results/rundir).
func (r *runner) doing(what string, at time.Time) {
	r.mu.Lock()
	r.m.Doing = &manifest.Activity{What: what, Since: at}
	r.mu.Unlock()
	r.save()
}

// markAbandoned marks the runs a killed firstboot left looking alive; a
// failure is logged, never a reason not to run.
func markAbandoned(ctx context.Context, runsDir string, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	marked, err := rundir.MarkAbandoned(ctx, runsDir)
	for _, m := range marked {
		log.Warn("marked a run a killed firstboot left running as incomplete", "run", m.Dir, "reason", m.Reason)
	}
	if err != nil {
		log.Warn("marking runs a killed firstboot left running", "err", err)
	}
}

// writeScenarioCopy keeps the scenario as it was run: its bytes when it was
// parsed from bytes (a campaign's variant has no file of its own), else its file.
func writeScenarioCopy(s *Scenario, dst string) error {
	data := s.Source
	if data == nil {
		var err error
		if data, err = os.ReadFile(s.File); err != nil {
			return err
		}
	}
	return os.WriteFile(dst, data, 0o644)
}

func hostFacts() manifest.Host {
	h := manifest.Host{CPUs: runtime.NumCPU(), Arch: runtime.GOARCH}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return h
}

// secretsSink hands key log lines to the capture as Decryption Secrets
// Blocks as they come, so a capture cut short still carries the sessions'
// secrets (Stop's IntoCapture then moves them all ahead of the packets).
func secretsSink(c *capture.Capture) func([]byte) {
	return func(line []byte) { c.AddSecrets(capture.SecretsTLSKeyLog, bytes.Clone(line)) }
}

// controlUp opens the run's control socket (firstboot continue and mark).
func (r *runner) controlUp(ctx context.Context) error {
	r.person = &Person{Prompt: r.cfg.Prompt, RunDir: r.dir}
	c, err := listenControl(r.dir, r.person)
	if err != nil {
		return err
	}
	r.control = c
	r.person.Tell("run %s: directory %s", r.m.RunID, r.dir)
	return nil
}

func (r *runner) controlDown(ctx context.Context) error {
	if r.control == nil {
		return nil
	}
	return r.control.Close()
}

// hear lets the person talk to the run while its steps run: what a pause or
// a manual run does not take is handled here. It reads the terminal, if
// any. The returned function stops hearing.
func (r *runner) hear(env *Env) (stop func()) {
	p := r.person
	p.mu.Lock()
	p.idle = func(s Said) error {
		switch s.Kind {
		case SayMark:
			return noteMark(env, s.Text)
		case SayContinue:
			return errors.New("nothing is paused")
		case SayLine:
			return errors.New("the run is not waiting for you (firstboot mark RUN NAME notes a moment in the timeline)")
		case SayEOF:
			return nil
		case SayEnd:
			return errors.New("--end ends manual runs; this one runs its scenario's steps")
		}
		return fmt.Errorf("unknown request %q", s.Kind)
	}
	p.mu.Unlock()
	if r.cfg.Terminal != nil {
		go p.ReadTerminal(r.cfg.Terminal)
	}
	return func() {
		p.mu.Lock()
		p.idle = nil
		p.mu.Unlock()
	}
}

// displayUp serves the machine's screen on the display address, and starts
// the recording when the run records.
func (r *runner) displayUp(ctx context.Context) error {
	sock, err := r.machine.DisplaySocket(ctx)
	if err != nil {
		return err
	}
	cfg := vnc.Config{Dial: vnc.DialUnix(sock), Logger: r.log}
	if r.cfg.Record {
		rec, err := vnc.NewRecorder(filepath.Join(r.dir, RecordingDir), r.machine.Screenshot, r.log)
		if err != nil {
			return err
		}
		r.recorder = rec
		cfg.OnInput = rec.Input
	}
	p, err := vnc.Listen(r.cfg.Display, cfg)
	if err != nil {
		return err
	}
	r.proxy = p
	r.log.Info("display", "addr", p.Addr().String())
	r.person.Tell("display: vnc://%s (connect a VNC viewer to watch or take over)", p.Addr())
	return nil
}

func (r *runner) displayDown(ctx context.Context) error {
	var err error
	if r.proxy != nil {
		err = r.proxy.Close()
	}
	if r.recorder != nil {
		err = errors.Join(err, r.recorder.Close())
	}
	return err
}
