package libvirt

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/lab"
)

func TestNetworkXMLSimulated(t *testing.T) {
	x, err := NetworkXML(lab.NetworkSpec{Name: "run1", Subnet: netip.MustParsePrefix("10.77.5.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	var n libvirtxml.Network
	if err := n.Unmarshal(x); err != nil {
		t.Fatalf("%v\n%s", err, x)
	}
	if n.Name != "firstboot-run1" {
		t.Errorf("name %q", n.Name)
	}
	if n.Forward != nil {
		t.Errorf("simulated network has a <forward>: %s", x)
	}
	if n.DNS == nil || n.DNS.Enable != "no" {
		t.Errorf("DNS not disabled: %s", x)
	}
	if len(n.IPs) != 1 || n.IPs[0].Address != "10.77.5.1" || n.IPs[0].Prefix != 24 {
		t.Fatalf("IPs %+v", n.IPs)
	}
	r := n.IPs[0].DHCP.Ranges[0]
	if r.Start != "10.77.5.100" || r.End != "10.77.5.199" {
		t.Errorf("DHCP range %s-%s", r.Start, r.End)
	}
	// The dnsmasq options live in libvirt's dnsmasq XML namespace.
	if !strings.Contains(x, `xmlns="http://libvirt.org/schemas/network/dnsmasq/1.0"`) {
		t.Errorf("dnsmasq options not in their namespace:\n%s", x)
	}
}

func TestNetworkXMLErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec lab.NetworkSpec
	}{
		{"no name", lab.NetworkSpec{Subnet: netip.MustParsePrefix("10.77.1.0/24")}},
		{"ipv6 subnet", lab.NetworkSpec{Name: "x", Subnet: netip.MustParsePrefix("fd00::/64")}},
		{"too small", lab.NetworkSpec{Name: "x", Subnet: netip.MustParsePrefix("10.77.1.0/28")}},
		{"no subnet", lab.NetworkSpec{Name: "x"}},
		{"bad mode", lab.NetworkSpec{Name: "x", Mode: "nat", Subnet: netip.MustParsePrefix("10.77.1.0/24")}},
		{"bridged without bridge", lab.NetworkSpec{Name: "x", Mode: lab.Bridged}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if x, err := NetworkXML(tc.spec); err == nil {
				t.Fatalf("accepted:\n%s", x)
			}
		})
	}
}

func TestBridgedValidation(t *testing.T) {
	spec := lab.NetworkSpec{Name: "br", Mode: lab.Bridged, Bridge: "fb-no-such-br"}
	x, err := NetworkXML(spec)
	if err != nil {
		t.Fatal(err)
	}
	var n libvirtxml.Network
	if err := n.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if n.Forward == nil || n.Forward.Mode != "bridge" || n.Bridge.Name != "fb-no-such-br" {
		t.Errorf("bridged XML: %s", x)
	}
	// Validation only: a missing host bridge is refused, nothing is started.
	l := &Lab{}
	if err := l.ValidateBridged(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing bridge: %v", err)
	}
	if err := l.ValidateBridged(context.Background(), lab.NetworkSpec{Name: "br", Mode: lab.Bridged, Bridge: "lo"}); err == nil {
		t.Error("lo accepted as a bridge")
	}
}

func TestPickSubnet(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name string
		used []netip.Prefix
		skip int
		want string
	}{
		{"empty", nil, 0, "10.77.1.0/24"},
		{"skips used", []netip.Prefix{p("10.77.1.0/24"), p("10.77.2.0/24")}, 0, "10.77.3.0/24"},
		{"overlapping wide net", []netip.Prefix{p("10.77.0.0/22")}, 0, "10.77.4.0/24"},
		{"skip for retry", []netip.Prefix{p("10.77.1.0/24")}, 1, "10.77.3.0/24"},
		{"unrelated nets", []netip.Prefix{p("192.168.122.0/24")}, 0, "10.77.1.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pickSubnet(tc.used, tc.skip)
			if !ok || got.String() != tc.want {
				t.Errorf("pickSubnet = %v %v, want %s", got, ok, tc.want)
			}
		})
	}
	if _, ok := pickSubnet([]netip.Prefix{p("10.77.0.0/16")}, 0); ok {
		t.Error("found a free subnet inside a used /16")
	}
}

func TestDomainXML(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("k"), 0o644)
	spec, err := normalize(lab.MachineSpec{Name: "m1", Kernel: kernel, Cmdline: "console=ttyS0", RunDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, accel := range []string{"tcg", "kvm"} {
		x, err := DomainXML(spec, "firstboot-net", accel, "")
		if err != nil {
			t.Fatal(err)
		}
		var d libvirtxml.Domain
		if err := d.Unmarshal(x); err != nil {
			t.Fatal(err)
		}
		wantType := map[string]string{"tcg": "qemu", "kvm": "kvm"}[accel]
		if d.Type != wantType {
			t.Errorf("%s: domain type %q, want %q", accel, d.Type, wantType)
		}
		if d.Name != "firstboot-m1" || d.OS.Kernel != kernel || d.OS.Cmdline != "console=ttyS0" {
			t.Errorf("name/kernel/cmdline: %s %s %s", d.Name, d.OS.Kernel, d.OS.Cmdline)
		}
		ifc := d.Devices.Interfaces[0]
		if ifc.Source.Network.Network != "firstboot-net" || ifc.Model.Type != "virtio" || ifc.MAC.Address != spec.MAC {
			t.Errorf("interface %+v", ifc)
		}
		s := d.Devices.Serials[0]
		if s.Source.Pty == nil || s.Log == nil || s.Log.File != filepath.Join(dir, "console.log") {
			t.Errorf("serial: pty %v log %+v", s.Source.Pty, s.Log)
		}
		if len(d.Devices.Videos) != 1 || d.Devices.Videos[0].Model.Type != "vga" {
			t.Errorf("video %+v", d.Devices.Videos)
		}
		if len(d.Devices.Graphics) != 0 {
			t.Errorf("graphics (VNC/SPICE) configured: %+v", d.Devices.Graphics)
		}
		if len(d.SecLabel) != 1 || d.SecLabel[0].Label != "+0:+0" || d.SecLabel[0].Relabel != "no" {
			t.Errorf("seclabel %+v", d.SecLabel)
		}
	}
	// The MAC is stable per run directory and machine, and differs between them.
	if DeriveMAC(dir, "firstboot-m1").String() != spec.MAC {
		t.Error("MAC not derived from run dir and name")
	}
	if DeriveMAC(dir, "a").String() == DeriveMAC(dir, "b").String() || DeriveMAC("x", "a").String() == DeriveMAC("y", "a").String() {
		t.Error("derived MACs collide")
	}
}

func TestNormalizeErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, []byte("x"), 0o644)
	for _, tc := range []struct {
		name string
		spec lab.MachineSpec
	}{
		{"no name", lab.MachineSpec{Kernel: f, RunDir: dir}},
		{"no run dir", lab.MachineSpec{Name: "m", Kernel: f}},
		{"no boot source", lab.MachineSpec{Name: "m", RunDir: dir}},
		{"kernel and ISO", lab.MachineSpec{Name: "m", Kernel: f, ISO: f, RunDir: dir}},
		{"missing kernel", lab.MachineSpec{Name: "m", Kernel: filepath.Join(dir, "nope"), RunDir: dir}},
		{"bad firmware", lab.MachineSpec{Name: "m", Kernel: f, RunDir: dir, Firmware: "coreboot"}},
		{"bad MAC", lab.MachineSpec{Name: "m", Kernel: f, RunDir: dir, MAC: "zz"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := normalize(tc.spec); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// An ISO with a disk (installer onto a target) is fine.
	if _, err := normalize(lab.MachineSpec{Name: "m", ISO: f, Disk: f, RunDir: dir}); err != nil {
		t.Errorf("ISO+disk: %v", err)
	}
	// So is a kernel with its root disk (the Debian images boot that way):
	// the domain has both the kernel and the disk.
	spec, err := normalize(lab.MachineSpec{Name: "m", Kernel: f, Disk: f, Cmdline: "root=LABEL=debian-root", RunDir: dir})
	if err != nil {
		t.Fatalf("kernel+disk: %v", err)
	}
	x, err := DomainXML(spec, "net", "tcg", filepath.Join(dir, "overlay.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<kernel>" + f + "</kernel>", "<cmdline>root=LABEL=debian-root</cmdline>", `<source file="` + filepath.Join(dir, "overlay.qcow2") + `"`, `<target dev="vda" bus="virtio"`} {
		if !strings.Contains(x, want) {
			t.Errorf("kernel+disk domain lacks %s:\n%s", want, x)
		}
	}
}

func TestCallEnforcesDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	_, err := call(ctx, "stuck", func() (int, error) { <-block; return 1, nil })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stuck") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("call did not return at the deadline")
	}
	wantErr := errors.New("boom")
	if err := call0(context.Background(), "fails", func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Fatalf("error not wrapped: %v", err)
	}
}

func TestSocketFromURI(t *testing.T) {
	for uri, want := range map[string]string{
		"qemu:///system":                    DefaultSocket,
		"qemu:///system?socket=/run/x.sock": "/run/x.sock",
		"qemu+ssh://host/system":            "",
		"qemu:///session":                   "",
		"xen:///system":                     "",
	} {
		got, err := socketFromURI(uri)
		if (want == "") != (err != nil) || got != want {
			t.Errorf("socketFromURI(%q) = %q, %v; want %q", uri, got, err, want)
		}
	}
}

func TestNetworkXMLRouted(t *testing.T) {
	x, err := NetworkXML(lab.NetworkSpec{Name: "r", Mode: lab.Routed, Subnet: netip.MustParsePrefix("10.77.9.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	var n libvirtxml.Network
	if err := n.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	// Isolated like a simulated network: the lab namespace routes nothing;
	// the router handed out is lab/uplink's end of the veth.
	if n.Forward != nil || n.DNS == nil || n.DNS.Enable != "no" || len(n.IPs) != 1 || n.IPs[0].Address != "10.77.9.1" {
		t.Errorf("routed network: %s", x)
	}
	if !strings.Contains(x, "option:router,10.77.9.2") || !strings.Contains(x, "option:dns-server,10.77.9.1") {
		t.Errorf("routed network does not hand out router .2 and DNS .1:\n%s", x)
	}
	if routerAddr(netip.MustParsePrefix("10.77.9.0/24")).String() != "10.77.9.2" {
		t.Error("routerAddr")
	}
}

func TestLabBridgeXML(t *testing.T) {
	x, err := labBridgeDef("firstboot-b").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var n libvirtxml.Network
	if err := n.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	// A plain bridge: nothing of the lab speaks on the real network.
	if n.Forward != nil || len(n.IPs) != 0 || n.DNS == nil || n.DNS.Enable != "no" || n.PortOptions == nil || n.PortOptions.Isolated != "yes" {
		t.Errorf("lab-side bridge: %s", x)
	}
}
