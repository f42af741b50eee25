package analyzer

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/firstboot/firstboot/results/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden compares analysis.json and every log, in both log formats, for the
// scenario capture with three steps, against testdata/golden. Run with -update
// after an intended change and review the diff.
func TestGolden(t *testing.T) {
	p := tempFile(t, "conversation.pcapng")
	writePcapng(t, p, []layers.LinkType{layers.LinkTypeEthernet}, conversation(t))
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	steps := []Step{
		{Name: "boot", Start: t0.Add(50 * time.Millisecond)},
		{Name: "browse", Start: t0.Add(250 * time.Millisecond)},
		{Name: "idle", Start: t0.Add(350 * time.Millisecond), End: t0.Add(450 * time.Millisecond)},
	}
	a := analyze(t, p, Options{FirstParty: []string{"example.com"}, Steps: steps})
	if *update {
		// The fuzz seeds are this capture, in both formats.
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("testdata/seed.pcapng", raw, 0o644); err != nil {
			t.Fatal(err)
		}
		writePcap(t, "testdata/seed.pcap", layers.LinkTypeEthernet, conversation(t))
	}
	compareGolden(t, a, "golden", 9) // the logs and lan.log: the capture has DHCP
}

// compareGolden writes a's outputs in both log formats and compares each
// file (files of them) with testdata/<dir>/<name>.golden; -update rewrites
// them.
func compareGolden(t *testing.T, a *schema.Analysis, dir string, files int) {
	t.Helper()
	for _, lf := range []string{LogsTSV, LogsJSON} {
		out := t.TempDir()
		if err := WriteOutputs(out, a, lf); err != nil {
			t.Fatal(err)
		}
		got, err := filepath.Glob(filepath.Join(out, "*"))
		if err != nil || len(got) != files {
			t.Fatalf("outputs %v, want %d files: %v", got, files, err)
		}
		for _, f := range got {
			name := filepath.Base(f)
			if lf == LogsJSON {
				if name == "analysis.json" {
					continue
				}
				name = "json-" + name
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", dir, name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, b, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("%s differs from %s; run go test -run '%s' -update and review the diff", name, golden, t.Name())
			}
		}
	}
}

// TestGoldenLAN compares the outputs for the LAN, tunnel and proxy capture
// (scripts/lan-seed.sh: real announcers, proxies and STARTTLS clients, and
// Zeek's tunnel captures) against testdata/golden-lan: lan.log, tunnel.log,
// tunnel_parents, proxies, hello_retry, the lan_announcements sections.
func TestGoldenLAN(t *testing.T) {
	a := analyze(t, "testdata/seed-lan.pcap", Options{FirstParty: []string{"example.com"}})
	if len(a.LAN) == 0 || len(a.Tunnels) == 0 || len(a.LANAnnouncements) == 0 {
		t.Fatalf("lan %d tunnels %d identifiers %d: the capture holds all three", len(a.LAN), len(a.Tunnels), len(a.LANAnnouncements))
	}
	compareGolden(t, a, "golden-lan", 10) // and lan.log and tunnel.log
}
