package guest

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestModuleOrder(t *testing.T) {
	// The virtio-net chain as Debian 6.1's modules declare it (depends=),
	// plus a builtin that must be skipped.
	graph := map[string][]string{
		"virtio_net":            {"net_failover", "virtio", "virtio_ring"},
		"net_failover":          {"failover"},
		"failover":              nil,
		"virtio_pci":            {"virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_ring"},
		"virtio_pci_modern_dev": nil,
		"virtio_pci_legacy_dev": nil,
		"virtio":                {"virtio_ring"},
		"virtio_ring":           {"af_packet"},
	}
	deps := func(g map[string][]string) func(string) ([]string, error) {
		return func(n string) ([]string, error) {
			d, ok := g[n]
			if !ok {
				return nil, errors.New("no such module")
			}
			return d, nil
		}
	}
	tests := []struct {
		name    string
		targets []string
		graph   map[string][]string
		want    []string
		wantErr string
	}{
		{name: "virtio_net alone", targets: []string{"virtio_net"}, graph: graph,
			want: []string{"failover", "net_failover", "virtio_ring", "virtio", "virtio_net"}},
		{name: "transport and driver", targets: []string{"virtio_pci", "virtio_net"}, graph: graph,
			want: []string{"virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_ring", "virtio", "virtio_pci", "failover", "net_failover", "virtio_net"}},
		{name: "dash spelling", targets: []string{"net-failover"}, graph: graph, want: []string{"failover", "net_failover"}},
		{name: "builtin target", targets: []string{"af_packet"}, graph: graph, want: nil},
		{name: "missing", targets: []string{"virtio_net"}, graph: map[string][]string{"virtio_net": {"nope"}}, wantErr: "module nope (needed by virtio_net)"},
		{name: "cycle", targets: []string{"a"}, graph: map[string][]string{"a": {"b"}, "b": {"a"}}, wantErr: "cycle: a -> b -> a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ModuleOrder(tt.targets, deps(tt.graph), map[string]bool{"af_packet": true})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("order %v, want %v", got, tt.want)
			}
			// Whatever the order, every dependency precedes its user.
			pos := map[string]int{}
			for i, m := range got {
				pos[m] = i
			}
			for _, m := range got {
				for _, d := range tt.graph[m] {
					if _, builtin := map[string]bool{"af_packet": true}[d]; !builtin && pos[d] >= pos[m] {
						t.Errorf("%s loads before its dependency %s", m, d)
					}
				}
			}
		})
	}
}

func TestParseAptShow(t *testing.T) {
	out := []byte("Package: busybox-static\nVersion: 1:1.35.0-4+deb12u1+b1\nDescription: x\n y\nSHA256: aa11\n\n" +
		"Package: linux-image-6.1.0-56-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\nSHA256: bb22\n")
	got := parseAptShow(out)
	if got["busybox-static"] != [2]string{"1:1.35.0-4+deb12u1+b1", "aa11"} || got["linux-image-6.1.0-56-amd64"] != [2]string{"6.1.192-2", "bb22"} || len(got) != 2 {
		t.Errorf("%v", got)
	}
	if n := debFileName("busybox-static", "1:1.35.0-4+deb12u1+b1"); n != "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb" {
		t.Errorf("deb file name %s", n)
	}
}

func TestCheckStaticELF(t *testing.T) {
	sh, err := os.ReadFile("/bin/sh") // Debian's dash is dynamically linked
	if err != nil {
		t.Skip("no /bin/sh")
	}
	if err := checkStaticELF(sh); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("/bin/sh: %v, want dynamically linked", err)
	}
	if err := checkStaticELF([]byte("#!/bin/sh\n")); err == nil {
		t.Error("a script passed as an ELF")
	}
}
