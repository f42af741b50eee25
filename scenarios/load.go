package scenarios

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults applied to fields a scenario leaves out.
const (
	DefaultCPUs          = 1
	DefaultMemory        = Size(512 << 20)
	DefaultWindow        = 10 * time.Minute
	DefaultKeyInterval   = 100 * time.Millisecond
	DefaultActionTimeout = 5 * time.Minute
	// DefaultClickTextTimeout is how long click_text waits for its text.
	DefaultClickTextTimeout = time.Minute
)

// Load reads and checks a scenario file. Every mistake found is reported, each
// as file:line:col with what was expected (errors.Join of *PosError).
func Load(path string) (*Scenario, error) { return LoadWith(path, LoadOptions{}) }

// LoadOptions change what the loader accepts.
type LoadOptions struct {
	// Manual is for a person at the keyboard (firstboot run --manual,
	// firstboot record): the scenario has no steps (the person makes them)
	// and may leave out its name (the file's name is used).
	Manual bool
	// Dir, when set, is where the scenario's relative paths start instead
	// of the file's folder (a campaign's variant is made from another
	// scenario and has no file of its own there).
	Dir string
}

// LoadWith is Load with options.
func LoadWith(path string, opt LoadOptions) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading scenario: %w", err)
	}
	return ParseWith(path, data, opt)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse checks a scenario given as bytes; name is used in error messages and to
// resolve relative image paths.
func Parse(name string, data []byte) (*Scenario, error) { return ParseWith(name, data, LoadOptions{}) }

// ParseWith is Parse with options.
func ParseWith(name string, data []byte, opt LoadOptions) (*Scenario, error) {
	d := &decoder{file: name, manual: opt.Manual}
	s := &Scenario{}
	top, err := d.decodeDocument(data, s)
	if err != nil {
		return nil, err
	}
	d.check(s, top)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	sum := sha256.Sum256(data)
	s.File, s.SHA256, s.Source, s.Dir = name, hex.EncodeToString(sum[:]), data, opt.Dir
	s.applyDefaults()
	return s, nil
}

// DecodeYAML decodes one YAML document strictly into v, a pointer to a struct
// whose fields carry yaml, required and enum tags as Scenario's do: unknown
// keys, wrong types, duplicate keys and bad values are all reported, each as
// name:line:column with what was expected and a suggestion (errors.Join of
// *PosError). Other files firstboot reads (campaigns) use it so their mistakes
// read the same. It returns the document's top node for checks that span
// several fields.
func DecodeYAML(name string, data []byte, v any) (*yaml.Node, error) {
	return (&decoder{file: name}).decodeDocument(data, v)
}

// decodeDocument decodes data's one document into v.
func (d *decoder) decodeDocument(data []byte, v any) (*yaml.Node, error) {
	name := d.file
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &PosError{File: name, Line: line, Col: 1, Msg: "not valid YAML: " + m[2]}
		}
		if err.Error() == "EOF" {
			return nil, &PosError{File: name, Line: 1, Col: 1, Msg: errNoDocument.Error()}
		}
		return nil, fmt.Errorf("%s: not valid YAML: %w", name, err)
	}
	if len(root.Content) == 0 {
		return nil, &PosError{File: name, Line: 1, Col: 1, Msg: errNoDocument.Error()}
	}
	d.decode(root.Content[0], reflect.ValueOf(v).Elem(), "")
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return root.Content[0], nil
}

// check finds mistakes that span several fields.
func (d *decoder) check(s *Scenario, top *yaml.Node) {
	at := func(key string) *yaml.Node { return findKey(top, key) }
	if d.manual && s.Name == "" {
		s.Name = NameFromFile(d.file)
	}
	if !regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`).MatchString(s.Name) {
		d.fail(at("name"), "name %q: use lower-case letters, digits, '.', '_' and '-' (it becomes part of the run id)", s.Name)
	}
	img := s.Image
	switch {
	case img.Builtin != "" && (img.Kind != "" || img.Path != ""):
		d.fail(at("image"), "image: give either builtin or kind+path, not both")
	case img.Builtin == "" && img.Kind == "":
		d.fail(at("image"), "image: give builtin (testguest, debian-12, debian-13) or kind (disk, iso, kernel)")
	case img.Kind == "kernel" && img.Kernel == "":
		d.fail(at("image"), "image: kind kernel needs kernel (and usually initrd, cmdline)")
	case (img.Kind == "disk" || img.Kind == "iso") && img.Path == "":
		d.fail(at("image"), "image: kind %s needs path", img.Kind)
	}
	if img.TrustLabCA && img.Builtin == "" {
		d.fail(at("image"), "image.trust_lab_ca works with builtin images; install the lab CA into your own image as docs/images.md says")
	}
	if img.SHA256 != "" && !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(img.SHA256) {
		d.fail(at("image"), "image.sha256: expected 64 lower-case hex digits")
	}
	// The host bridge and the egress interface are facts of the host: the
	// scenario may name them, firstboot.yaml or a flag may instead.
	if s.Network.Bridge != "" && s.Network.Mode != "bridged" {
		d.fail(at("network"), "network: bridge is only for mode bridged")
	}
	if s.Network.Egress != "" && s.Network.Mode != "routed" {
		d.fail(at("network"), "network: egress is only for mode routed")
	}
	if s.Network.InterceptTLS && s.Network.Mode != "routed" && s.Network.Mode != "" {
		d.fail(at("network"), "network: intercept_tls is for mode routed (simulated mode's responders see inside TLS already; bridged traffic does not pass the lab)")
	}
	if s.Network.RefuseQUIC && !s.Network.InterceptTLS {
		d.fail(at("network"), "network: refuse_quic goes with intercept_tls")
	}
	media := map[string]Media{}
	mediaNode := at("image")
	if v := valueOf(valueOf(top, "image"), "media"); v != nil {
		mediaNode = v
	}
	for i, m := range img.Media {
		n := mediaNode
		if mediaNode.Kind == yaml.SequenceNode && i < len(mediaNode.Content) {
			n = mediaNode.Content[i]
		}
		if !mediaNameRE.MatchString(m.Name) {
			d.fail(n, "media %q: name it with letters, digits, '.', '_' and '-'", m.Name)
		}
		if m.Name == "image" {
			d.fail(n, "media %q: the name is reserved for the image's own ISO (insert/eject image)", m.Name)
		}
		if _, dup := media[m.Name]; dup {
			d.fail(n, "media %q: the name is used twice", m.Name)
		}
		if m.SHA256 != "" && !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(m.SHA256) {
			d.fail(n, "media %q: sha256: expected 64 lower-case hex digits", m.Name)
		}
		if !m.StartsInserted() && m.Kind == "disk" && !hotpluggableBus(s.Machine.DiskBus) {
			d.fail(n, "media %q: a %s disk cannot be plugged in while the machine runs; use disk_bus virtio or scsi, kind usb, or leave it inserted", m.Name, busOrDefault(s.Machine.DiskBus))
		}
		media[m.Name] = m
	}
	if img.Kind == "iso" {
		// The installer ISO is a CD-ROM too: `eject: image` takes it out.
		media["image"] = Media{Name: "image", Kind: "cdrom", Path: img.Path}
	}
	floppies := 0
	for _, m := range img.Media {
		if m.Kind == "floppy" {
			floppies++
		}
	}
	if floppies > 2 {
		d.fail(mediaNode, "image.media: %d floppies; a PC has two floppy drives at most", floppies)
	}
	if s.Machine.DiskBus == "ide" && s.Machine.Firmware == "uefi" {
		d.fail(at("machine"), "machine: disk_bus ide needs firmware bios (the UEFI machine, q35, has no IDE): use sata")
	}
	if len(s.Machine.CPUFeatures) > 0 && s.Machine.CPUModel == "" {
		d.fail(at("machine"), "machine.cpu_features: set cpu_model too (the features adjust a model)")
	}
	for _, f := range s.Machine.CPUFeatures {
		if !regexp.MustCompile(`^[+-][a-z0-9][a-z0-9._-]*$`).MatchString(f) {
			d.fail(at("machine"), "machine.cpu_features: %q: write +name to add a feature or -name to remove it (libvirt's names: +sse4.2, +invtsc, -avx)", f)
		}
	}
	if s.Machine.AppleSMCOSKFile != "" && s.OS.Family != "" && s.OS.Family != "macos" {
		d.fail(at("machine"), "machine.apple_smc_osk_file: the Apple SMC is for macOS guests (os.family is %s)", s.OS.Family)
	}
	steps := map[string]bool{}
	starts := 0
	stepsNode := at("steps")
	for i, st := range s.Steps {
		n := stepsNode
		if stepsNode != nil && i < len(stepsNode.Content) {
			n = stepsNode.Content[i]
		}
		if steps[st.Name] {
			d.fail(n, "step %q: the name is used twice", st.Name)
		}
		steps[st.Name] = true
		if st.Name == "before" || st.Name == "after" {
			d.fail(n, "step %q: the name is reserved for traffic outside the steps", st.Name)
		}
		for _, a := range st.Actions {
			pos := &yaml.Node{Line: a.Line, Column: a.Col}
			switch a.Kind {
			case "start":
				starts++
			case "insert", "eject":
				m, ok := media[a.Media.Name]
				switch {
				case !ok:
					d.fail(pos, "%s: no media named %q in image.media%s", a.Kind, a.Media.Name, mediaNames(img.Media))
				case m.Kind == "disk" && !hotpluggableBus(s.Machine.DiskBus):
					d.fail(pos, "%s %s: a %s disk cannot be plugged in or out while the machine runs; use disk_bus virtio or scsi, or kind usb", a.Kind, m.Name, busOrDefault(s.Machine.DiskBus))
				}
				if starts == 0 {
					d.fail(pos, "%s before start: the machine is not running yet (media that should be in at power-on: leave out inserted: false)", a.Kind)
				}
			case "mark", "wait", "pause":
			default:
				if starts == 0 {
					d.fail(pos, "%s before start: the machine is not running yet (add `- start` first)", a.Kind)
				}
			}
			if s.Machine.Video == "none" && a.usesScreen() {
				d.fail(pos, "%s: the machine has no screen (machine.video: none)", a.Kind)
			}
		}
	}
	switch {
	case d.manual && len(s.Steps) > 0:
		d.fail(stepsNode, "steps: a person drives this run from power-on and makes the steps (Enter ends one); this scenario has %d: remove them (keep image and machine), or run it without --manual", len(s.Steps))
	case d.manual:
	case len(s.Steps) == 0:
		d.fail(stepsNode, "steps: none; a scenario without steps is for a person at the keyboard: firstboot run --manual or firstboot record")
	case starts != 1:
		d.fail(stepsNode, "steps: the machine must be started exactly once with `- start` (found %d)", starts)
	}
	for _, e := range s.Expect {
		// A person names the steps of a manual run as it goes.
		if e.Step != "" && !steps[e.Step] && !d.manual {
			d.fail(at("expect"), "expect: step %q is not a step of this scenario", e.Step)
		}
	}
}

// NameFromFile makes a scenario name from a file name ("Windows 12.yaml"
// gives windows-12), for manual scenarios that have none.
func NameFromFile(file string) string {
	base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	var b strings.Builder
	for _, r := range strings.ToLower(base) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-._")
	if name == "" {
		return "manual"
	}
	return name
}

// mediaNameRE keeps media names usable in file names and messages.
var mediaNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// hotpluggableBus says whether disks on bus can be plugged in while the
// machine runs (SATA and IDE cannot; the default bus is virtio).
func hotpluggableBus(bus string) bool { return bus == "" || bus == "virtio" || bus == "scsi" }

func busOrDefault(bus string) string {
	if bus == "" {
		return "virtio"
	}
	return bus
}

func mediaNames(ms []Media) string {
	if len(ms) == 0 {
		return " (it has none)"
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return " (it has: " + strings.Join(names, ", ") + ")"
}

// ValueOf is the value node of key in mapping m, or nil (for checks that
// point at a key's value, in scenarios and campaign files).
func ValueOf(m *yaml.Node, key string) *yaml.Node { return valueOf(m, key) }

// valueOf is the value node of key in mapping m, or nil.
func valueOf(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func findKey(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i]
		}
	}
	return m
}

func (s *Scenario) applyDefaults() {
	if s.Machine.CPUs == 0 {
		s.Machine.CPUs = DefaultCPUs
	}
	if s.Machine.Memory == 0 {
		s.Machine.Memory = DefaultMemory
	}
	if s.Machine.Firmware == "" {
		s.Machine.Firmware = "bios"
	}
	if s.Machine.NIC == "" {
		s.Machine.NIC = "virtio"
	}
	if s.Machine.DiskBus == "" {
		s.Machine.DiskBus = "virtio"
	}
	if s.Machine.Video == "" {
		s.Machine.Video = "vga"
	}
	if s.Network.Mode == "" {
		s.Network.Mode = "simulated"
	}
	if s.Capture.Window == 0 {
		s.Capture.Window = Duration(DefaultWindow)
	}
	for i := range s.Steps {
		for j := range s.Steps[i].Actions {
			a := &s.Steps[i].Actions[j]
			if a.Keys != nil && a.Keys.Interval == 0 {
				a.Keys.Interval = Duration(DefaultKeyInterval)
			}
			if a.WaitScreen != nil {
				a.WaitScreen.Reference = s.ResolvePath(a.WaitScreen.Reference)
			}
		}
	}
}

// ResolvePath makes a path in the scenario relative to the scenario file's
// folder (or LoadOptions.Dir).
func (s *Scenario) ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) || strings.Contains(p, "://") {
		return p
	}
	dir := s.Dir
	if dir == "" {
		dir = filepath.Dir(s.File)
	}
	return filepath.Join(dir, p)
}
