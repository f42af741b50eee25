package scenarios

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WritePlan prints what a run of s will do, in order, with every wait and time
// limit, and the longest the steps can take.
func WritePlan(w io.Writer, s *Scenario) error {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s (%s)\n", s.Name, s.File)
	if s.Description != "" {
		fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(s.Description))
	}
	if s.OS.Product != "" {
		fmt.Fprintf(&b, "os:       %s %s %s %s\n", s.OS.Family, s.OS.Product, s.OS.Release, s.OS.Build)
	}
	fmt.Fprintf(&b, "image:    %s\n", describeImage(s))
	m := s.Machine
	fmt.Fprintf(&b, "machine:  %d CPU, %d MiB, %s firmware, %s NIC, %s disk bus, %s video", m.CPUs, m.Memory.MiB(), m.Firmware, m.NIC, m.DiskBus, m.Video)
	if m.CPUModel != "" {
		fmt.Fprintf(&b, ", %s CPU", m.CPUModel)
		if len(m.CPUFeatures) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(m.CPUFeatures, " "))
		}
	}
	if m.TPM {
		b.WriteString(", TPM 2.0")
	}
	if m.AppleSMCOSKFile != "" {
		fmt.Fprintf(&b, ", Apple SMC (key from %s)", s.ResolvePath(m.AppleSMCOSKFile))
	}
	b.WriteString("\n")
	if s.uses("guest_exec") {
		b.WriteString("guest agent: virtio port org.qemu.guest_agent.0 (guest_exec needs qemu-guest-agent running in the image)\n")
	}
	switch s.Network.Mode {
	case "bridged":
		bridge := s.Network.Bridge
		if bridge == "" {
			bridge = "(firstboot.yaml's bridge or --bridge)"
		}
		fmt.Fprintf(&b, "network:  bridged to host bridge %s: the REAL internet, addresses from its DHCP\n", bridge)
	case "routed":
		egress := s.Network.Egress
		if egress == "" {
			egress = "the default route's interface"
		}
		fmt.Fprintf(&b, "network:  routed: the REAL internet, NATed out of %s; lab DHCP, DNS forwarded to the host's resolvers\n", egress)
	default:
		b.WriteString("network:  simulated internet (isolated lab network; firstboot answers DNS, NTP, HTTP, HTTPS, any TCP)\n")
	}
	fmt.Fprintf(&b, "capture:  from power-on, at most %s\n", s.Capture.Window)
	if len(s.FirstParty) > 0 {
		fmt.Fprintf(&b, "first party: %s\n", strings.Join(s.FirstParty, ", "))
	}
	var longest time.Duration
	for i, st := range s.Steps {
		fmt.Fprintf(&b, "step %d: %s\n", i+1, st.Name)
		for j, a := range st.Actions {
			fmt.Fprintf(&b, "  %d.%d  %s\n", i+1, j+1, a.Describe())
			longest += a.MaxDuration()
		}
	}
	fmt.Fprintf(&b, "longest: the steps take at most %s (the capture window cuts at %s)\n", longest, s.Capture.Window)
	if s.uses("pause") {
		b.WriteString("         plus the time a person takes at each pause\n")
	}
	for _, e := range s.Expect {
		scope := "whole run"
		if e.Step != "" {
			scope = "step " + e.Step
		}
		fmt.Fprintf(&b, "expect (%s): %s\n", scope, describeExpect(e))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// uses says whether any step has an action of kind.
func (s *Scenario) uses(kind string) bool {
	for _, st := range s.Steps {
		for _, a := range st.Actions {
			if a.Kind == kind {
				return true
			}
		}
	}
	return false
}

// MaxDuration is the longest an action can take (its wait or time limit).
func (a *Action) MaxDuration() time.Duration {
	switch a.Kind {
	case "wait":
		return a.Wait.D()
	case "keys", "type":
		var d time.Duration
		for _, ev := range a.Keys.Parsed {
			d += ev.Wait
			if ev.Codes != nil {
				d += a.Keys.Interval.D()
			}
		}
		return d
	case "wait_idle", "wait_screen":
		return a.Timeout(10 * time.Minute)
	case "shutdown":
		return a.Timeout(2 * time.Minute)
	case "wait_traffic", "console_expect", "guest_exec", "wait_text":
		return a.Timeout(DefaultActionTimeout)
	case "click_text":
		return a.Timeout(DefaultClickTextTimeout)
	}
	return 0
}

func describeImage(s *Scenario) string {
	img := s.Image
	var out string
	switch {
	case img.Builtin != "":
		out = "built-in " + img.Builtin + " (firstboot image build " + img.Builtin + ")"
		if img.TrustLabCA {
			out += ", trusting the lab CA"
		}
	case img.Kind == "kernel":
		out = "kernel " + s.ResolvePath(img.Kernel)
	default:
		out = img.Kind + " " + s.ResolvePath(img.Path)
	}
	if img.SHA256 != "" {
		out += " sha256 " + img.SHA256[:12] + "…"
	}
	for _, m := range img.Media {
		state := ""
		if !m.StartsInserted() {
			state = ", starts ejected"
		}
		out += fmt.Sprintf("; %s %s (%s%s)", m.Kind, m.Name, s.ResolvePath(m.Path), state)
	}
	return out
}

func describeExpect(e Expect) string {
	var parts []string
	if len(e.Absent) > 0 {
		parts = append(parts, "absent "+strings.Join(e.Absent, ", "))
	}
	if len(e.Present) > 0 {
		parts = append(parts, "present "+strings.Join(e.Present, ", "))
	}
	if e.MaxPlainHTTP != nil {
		parts = append(parts, fmt.Sprintf("at most %d plain-HTTP hosts", *e.MaxPlainHTTP))
	}
	if len(e.ThirdParty) > 0 {
		parts = append(parts, "third parties only "+strings.Join(e.ThirdParty, ", "))
	}
	if e.SYN != "" {
		parts = append(parts, "SYN "+e.SYN)
	}
	if len(e.JA4) > 0 {
		parts = append(parts, "JA4 in "+strings.Join(e.JA4, ", "))
	}
	return strings.Join(parts, "; ")
}
