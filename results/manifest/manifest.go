// Package manifest is the versioned record of one run: what was booted, with
// which tools, on which network, when each step began and ended on the
// capture's clock, and how the capture went. It is written at the start of a
// run and rewritten as the run goes, so an interrupted run still says what it
// has and why it stopped.
package manifest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/firstboot/firstboot/internal/fsutil"
	"github.com/firstboot/firstboot/internal/owner"
)

// SchemaVersion changes when a field changes meaning or disappears.
const SchemaVersion = 1

// FileName is the manifest's name inside a run directory.
const FileName = "manifest.json"

// TLSKeysFile is the NSS key log (SSLKEYLOGFILE format) a run writes into
// its directory: the secrets of the TLS and QUIC sessions its responders
// terminated (the capture carries them too, as Decryption Secrets Blocks).
const TLSKeysFile = "tls-keys.log"

// Run statuses.
const (
	StatusRunning    = "running"    // the run has not finished (or the process died)
	StatusComplete   = "complete"   // every step ran
	StatusIncomplete = "incomplete" // interrupted or a step failed; the capture so far is kept
)

// Manifest describes one run directory.
type Manifest struct {
	SchemaVersion int    `json:"schema_version"`
	RunID         string `json:"run_id"`
	Status        string `json:"status"`
	// Reason says why a run is incomplete (the failed step and its error, a signal, …).
	Reason     string `json:"reason,omitempty"`
	FailedStep string `json:"failed_step,omitempty"`
	// Owner is the firstboot process that made the run directory. While it
	// works on it (Status running, or Doing set) nothing else may; if it
	// has ended meanwhile, it was killed (see results/rundir).
	Owner *owner.Owner `json:"owner,omitempty"`
	// Doing is what the owner is doing with the directory; nil once it is
	// done (after the run, its analysis and report).
	Doing *Activity `json:"doing,omitempty"`

	Scenario Scenario `json:"scenario"`
	Image    Image    `json:"image"`
	Tools    Tools    `json:"tools"`
	Host     Host     `json:"host"`
	Network  Network  `json:"network"`
	Machine  Machine  `json:"machine"`
	Capture  Capture  `json:"capture"`
	// Timeline lists the run's setup phases, scenario steps, actions and marks in
	// order, timestamped on the host clock that also stamps the capture.
	Timeline []Entry `json:"timeline"`
	// Files lists the artifacts in the run directory, relative to it.
	Files []string `json:"files,omitempty"`
	// Campaign places the run in a campaign's matrix; absent for a lone run.
	Campaign *Campaign `json:"campaign,omitempty"`
}

// Campaign says which job of which campaign a run is.
type Campaign struct {
	Name     string `json:"name"`
	Instance string `json:"instance"` // one execution of the campaign (a scheduled campaign has many)
	Job      string `json:"job"`      // the matrix cell: scenario, host label, repetition
	// Repetition counts from 1; Label is the host label (vantage point) the job had to run on.
	Repetition int    `json:"repetition"`
	Label      string `json:"label,omitempty"`
	// Attempt is the queue's attempt at the job (a retry after an
	// infrastructure failure has attempt 2, …); Worker is who ran it.
	Attempt int    `json:"attempt"`
	Worker  string `json:"worker,omitempty"`
}

// Activity is a phase of the owner's work on a run directory.
type Activity struct {
	// What is "setup NAME", "cleanup NAME" (a setup phase), "step NAME" (a
	// scenario step), "capture" (waiting for the machine to stop),
	// "analysis" or "report".
	What  string    `json:"what"`
	Since time.Time `json:"since"`
}

// Scenario identifies the scenario file.
type Scenario struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	OS     OS     `json:"os"`
	// FirstParty is the vendor's domains, as the scenario gives them.
	FirstParty []string `json:"first_party,omitempty"`
}

// OS names the system under study.
type OS struct {
	Family  string `json:"family,omitempty"`
	Product string `json:"product,omitempty"`
	Release string `json:"release,omitempty"`
	Build   string `json:"build,omitempty"`
}

// Image records what was booted.
type Image struct {
	Kind   string   `json:"kind"` // kernel, disk, iso
	Name   string   `json:"name,omitempty"`
	Files  []string `json:"files"`
	SHA256 []string `json:"sha256"` // one per file, same order
}

// Tools records versions that can change results.
type Tools struct {
	Firstboot   string `json:"firstboot"`
	Libvirt     string `json:"libvirt,omitempty"`
	QEMU        string `json:"qemu,omitempty"`
	Accelerator string `json:"accelerator,omitempty"` // kvm or tcg
}

// Host describes the lab host.
type Host struct {
	Kernel string `json:"kernel,omitempty"`
	CPUs   int    `json:"cpus,omitempty"`
	Arch   string `json:"arch,omitempty"`
}

// Network records the lab network.
type Network struct {
	Mode    string `json:"mode"` // simulated, routed or bridged
	Name    string `json:"name,omitempty"`
	Bridge  string `json:"bridge,omitempty"`
	Subnet  string `json:"subnet,omitempty"`
	Gateway string `json:"gateway,omitempty"` // also the responders' address in simulated mode, the DNS forwarder's in routed mode
	// Uplink is how a routed or bridged run reached the real network.
	Uplink *Uplink `json:"uplink,omitempty"`
	// Intercept says how TLS was intercepted (routed runs with intercept_tls).
	Intercept *Intercept `json:"intercept,omitempty"`
}

// InterceptFile is the intercepting proxy's per-connection log in a run
// directory: one JSON line per connection (lab/intercept's Record).
const InterceptFile = "intercept.jsonl"

// Intercept records a run's TLS interception.
type Intercept struct {
	// Port is TCP port 443's destination: every machine connection to it
	// went through the proxy.
	Port int `json:"port"`
	// RefuseQUIC tells that the machine's UDP 443 was rejected (clients
	// fell back to TCP).
	RefuseQUIC bool `json:"refuse_quic"`
	// Roots names where the real servers' certificates were checked:
	// "system", plus extra root files given.
	Roots []string `json:"roots"`
	// Log is InterceptFile.
	Log string `json:"log"`
}

// Uplink records a real-internet run's way out. Addresses are what the host
// knew locally: firstboot never asks a service outside for them.
type Uplink struct {
	// Interface is where the machine's traffic left the host: routed, the
	// egress interface it was NATed to; bridged, the host bridge.
	Interface string `json:"interface"`
	// Link is firstboot's end of the veth between the lab namespace and the
	// namespace firstboot ran in (none when the taps sat on the host bridge).
	Link string `json:"link,omitempty"`
	// Router is the machine's default gateway: routed, firstboot's end of the
	// veth; bridged, the router the upstream DHCP named.
	Router string `json:"router,omitempty"`
	// Gateway is the egress interface's next hop (routed).
	Gateway string `json:"gateway,omitempty"`
	// EgressAddr is the address the machine's connections left from: routed,
	// the egress interface's (NAT); bridged, the machine's own lease.
	EgressAddr string `json:"egress_addr,omitempty"`
	// PublicAddr is EgressAddr when it is globally routable; empty when the
	// public address is not known (private space: another NAT follows).
	PublicAddr string `json:"public_addr,omitempty"`
	// DHCPServer is the server that gave the machine its lease, as the
	// capture shows it (bridged: the upstream network's).
	DHCPServer string `json:"dhcp_server,omitempty"`
	// Resolvers are where the lab's DNS forwarder sent the machine's queries
	// (routed); DNSLog is the file in the run directory that logs them.
	Resolvers []string `json:"resolvers,omitempty"`
	DNSLog    string   `json:"dns_log,omitempty"`
	// Events are the uplink going away and coming back during the run; the
	// run goes on, and the capture carries the same events as comments.
	Events []UplinkEvent `json:"events,omitempty"`
}

// UplinkEvent is one change of the uplink's state.
type UplinkEvent struct {
	Time   time.Time `json:"time"`
	State  string    `json:"state"` // "lost" or "restored"
	Detail string    `json:"detail"`
}

// Machine records the studied machine.
type Machine struct {
	Name      string `json:"name"`
	MAC       string `json:"mac,omitempty"`
	IP        string `json:"ip,omitempty"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	Firmware  string `json:"firmware"`
	// The virtual hardware the scenario asked for; empty means the lab's
	// default (virtio NIC and disk, vga, the hypervisor's CPU model).
	NIC         string   `json:"nic,omitempty"`
	DiskBus     string   `json:"disk_bus,omitempty"`
	Video       string   `json:"video,omitempty"`
	TPM         bool     `json:"tpm,omitempty"`
	CPUModel    string   `json:"cpu_model,omitempty"`
	CPUFeatures []string `json:"cpu_features,omitempty"`
	// AppleSMC says the machine had an Apple SMC device; its key is never recorded.
	AppleSMC bool `json:"apple_smc,omitempty"`
	// Media are the extra drives (their files and hashes are in Image).
	Media []Media `json:"media,omitempty"`
}

// Media is an extra drive of the machine.
type Media struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Inserted says the drive held its media at power-on (insert/eject
	// actions change that later; the timeline has them).
	Inserted bool `json:"inserted"`
}

// Capture records the packet capture.
type Capture struct {
	File      string    `json:"file"`
	Interface string    `json:"interface,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end,omitempty"`
	Packets   uint64    `json:"packets"`
	// Drops is what the kernel reported dropping (PACKET_STATISTICS); 0 means every packet is in the file.
	Drops uint64 `json:"drops"`
	// Received is every packet the kernel saw on the interface (= packets + drops).
	Received uint64 `json:"received"`
	// RingFreezes counts the times the capture's ring was full (TPACKET_V3's
	// freeze count): each froze the queue and dropped until the reader caught up.
	RingFreezes uint64 `json:"ring_freezes"`
	// DropsUnknown says the kernel's counters were lost with the process
	// that captured (it was killed): Drops is not known, Packets is what
	// the file holds.
	DropsUnknown bool `json:"drops_unknown,omitempty"`
	// StoppedBy says what ended the capture: machine-stopped, window, steps-done, interrupted, error, killed.
	StoppedBy string `json:"stopped_by,omitempty"`
}

// Entry kinds in the timeline.
const (
	KindSetup  = "setup"
	KindStep   = "step"
	KindAction = "action"
	KindMark   = "mark"
)

// Entry is one timeline record.
type Entry struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Step      string    `json:"step,omitempty"` // the scenario step an action or mark belongs to
	Start     time.Time `json:"start"`
	End       time.Time `json:"end,omitempty"`
	Error     string    `json:"error,omitempty"`
	Artifacts []string  `json:"artifacts,omitempty"`
}

// Step is a scenario step's span, as the analyzer segments by it.
type Step struct {
	Name       string
	Start, End time.Time
}

// Steps returns the scenario steps of the timeline in order.
func (m *Manifest) Steps() []Step {
	var out []Step
	for _, e := range m.Timeline {
		if e.Kind == KindStep {
			out = append(out, Step{Name: e.Name, Start: e.Start, End: e.End})
		}
	}
	return out
}

// Write stores the manifest in dir atomically (write to a temporary file, then
// rename), so a crash never leaves a half-written manifest.
func Write(dir string, m *Manifest) error {
	m.SchemaVersion = SchemaVersion
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("manifest: encoding: %w", err)
	}
	// 0600 as before: the manifest was always written with CreateTemp's mode.
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, FileName), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// Read loads a manifest from a run directory or a manifest file path.
func Read(path string) (*Manifest, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest: %s is not a firstboot manifest: %w", path, err)
	}
	if m.SchemaVersion == 0 || m.SchemaVersion > SchemaVersion {
		return nil, fmt.Errorf("manifest: %s has schema_version %d; this firstboot reads up to %d (upgrade firstboot)", path, m.SchemaVersion, SchemaVersion)
	}
	return &m, nil
}

// ListFiles lists the artifacts in a run directory, relative to it, for
// Manifest.Files (hidden files are left out).
func ListFiles(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			if rel, err := filepath.Rel(dir, p); err == nil {
				out = append(out, rel)
			}
		}
		return nil
	})
	return out
}
