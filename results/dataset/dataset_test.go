package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/firstboot/firstboot/internal/fsutil"
	"github.com/firstboot/firstboot/internal/testenv"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/results/dataset/testcapture"
	"github.com/firstboot/firstboot/results/schema"
)

func meta() Options {
	return Options{
		Metadata: Metadata{Creators: []string{"Ada Lovelace", "Alan Turing"}, Publisher: "Example University",
			LabLocation: "Room 1.23, Example University", License: "https://creativecommons.org/licenses/by/4.0/"},
		Version: "test",
	}
}

func needTshark(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		testenv.Missing(t, "tshark not installed")
	}
}

// tshark runs tshark on a file and returns its stdout lines.
func tshark(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("tshark", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %v: %v\n%s", args, err, errb.String())
	}
	s := strings.TrimRight(out.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func writeRun(t *testing.T, c testcapture.Config) (string, testcapture.Counts) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), c.RunID)
	if _, counts, err := testcapture.Write(dir, c); err != nil {
		t.Fatal(err)
	} else {
		return dir, counts
	}
	return "", testcapture.Counts{}
}

func TestBuildSplitsAndVerifies(t *testing.T) {
	needTshark(t)
	run, counts := writeRun(t, testcapture.Config{RunID: "r1", Screenshot: true})
	out := filepath.Join(t.TempDir(), "bundle")
	start := time.Now()
	res, err := Build(context.Background(), []string{run}, out, meta())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build: %d files, %d bytes, %s", res.Files, res.Bytes, time.Since(start))
	rd := filepath.Join(out, "runs", "r1")
	for _, f := range []string{"capture.pcapng", "manifest.json", "scenario.yaml", "console.log", "responders.jsonl",
		"analysis.json", "conn.log", "dns.log", "http.log", "dhcp.log", "analysis-options.json", "screenshots/boot.png"} {
		if _, err := os.Stat(filepath.Join(rd, f)); err != nil {
			t.Errorf("bundle lacks %s: %v", f, err)
		}
	}
	// Step captures: tshark reads them, with the counts the generator wrote.
	want := map[string]int{"01-boot.pcapng": counts.Boot, "02-browse.pcapng": counts.Browse, "03-after.pcapng": counts.After}
	ents, _ := os.ReadDir(filepath.Join(rd, "steps"))
	if len(ents) != len(want) {
		t.Errorf("steps dir has %d files, want %d (no empty before file)", len(ents), len(want))
	}
	var a schema.Analysis
	readJSON(t, filepath.Join(rd, "analysis.json"), &a)
	stepPackets := map[string]int64{}
	for _, s := range a.Steps {
		stepPackets[s.Name] = s.Summary.Packets
	}
	for name, n := range want {
		p := filepath.Join(rd, "steps", name)
		got := len(tshark(t, "-r", p, "-T", "fields", "-e", "frame.number"))
		if got != n {
			t.Errorf("%s: tshark counts %d packets, want %d", name, got, n)
		}
		step := strings.TrimSuffix(name[3:], ".pcapng")
		if stepPackets[step] != int64(n) {
			t.Errorf("analysis says step %s has %d packets, file has %d", step, stepPackets[step], n)
		}
		// Interface description and packet comments survive.
		if names := tshark(t, "-r", p, "-c", "1", "-T", "fields", "-e", "frame.interface_name"); len(names) != 1 || names[0] != "vnet0" {
			t.Errorf("%s: interface name %q, want vnet0", name, names)
		}
	}
	for name, comment := range map[string]string{"01-boot.pcapng": "firstboot: step boot begins", "02-browse.pcapng": "firstboot: step browse begins"} {
		got := strings.Join(tshark(t, "-r", filepath.Join(rd, "steps", name), "-T", "fields", "-e", "frame.comment"), "\n")
		if !strings.Contains(got, comment) {
			t.Errorf("%s: comments %q lack %q", name, got, comment)
		}
	}
	// The whole capture is copied byte for byte.
	if !sameFile(t, filepath.Join(run, "capture.pcapng"), filepath.Join(rd, "capture.pcapng")) {
		t.Error("bundled capture differs from the run's")
	}
	// MANIFEST is checkable with coreutils.
	if _, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command("sh", "-c", `awk '{h=$1; $1=$2=""; sub(/^  /,""); print h"  "$0}' MANIFEST | sha256sum -c --quiet`)
		cmd.Dir = out
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, b)
		}
	}
	// RO-Crate: the DataCite fields are on the root dataset.
	var crate struct {
		Context []any            `json:"@context"`
		Graph   []map[string]any `json:"@graph"`
	}
	readJSON(t, filepath.Join(out, CrateFile), &crate)
	if len(crate.Context) == 0 || crate.Context[0] != "https://w3id.org/ro/crate/1.1/context" {
		t.Errorf("@context %q", crate.Context)
	}
	var root map[string]any
	for _, e := range crate.Graph {
		if e["@id"] == "./" {
			root = e
		}
	}
	for _, k := range []string{"name", "creator", "publisher", "datePublished", "publicationYear", "resourceTypeGeneral", "license"} {
		if root[k] == nil {
			t.Errorf("root dataset lacks %s", k)
		}
	}
	if root["@type"] != "Dataset" || root["datePublished"] != "2026-11-01" {
		t.Errorf("root @type %v datePublished %v", root["@type"], root["datePublished"])
	}

	if _, err := Verify(context.Background(), out); err != nil {
		t.Fatalf("verify of a fresh bundle: %v", err)
	}
	// Tampering is found and named.
	tamper := []struct {
		name, file string
		do         func(p string) error
		wantMsg    string
	}{
		{"step byte", "runs/r1/steps/02-browse.pcapng", flipLastByte, "runs/r1/steps/02-browse.pcapng"},
		{"analysis byte", "runs/r1/analysis.json", flipLastByte, "runs/r1/analysis.json"},
		{"extra file", "runs/r1/extra.txt", func(p string) error { return os.WriteFile(p, []byte("x"), 0o644) }, "runs/r1/extra.txt: not listed"},
		{"missing file", "runs/r1/console.log", os.Remove, "runs/r1/console.log: missing"},
	}
	for _, tc := range tamper {
		t.Run(tc.name, func(t *testing.T) {
			cp := filepath.Join(t.TempDir(), "b")
			copyTree(t, out, cp)
			if err := tc.do(filepath.Join(cp, tc.file)); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(context.Background(), cp)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("verify: %v; want an error naming %q", err, tc.wantMsg)
			}
		})
	}
	// A consistent change (file and MANIFEST both updated) is still caught by re-analysis.
	t.Run("consistent analysis edit", func(t *testing.T) {
		cp := filepath.Join(t.TempDir(), "b")
		copyTree(t, out, cp)
		p := filepath.Join(cp, "runs/r1/dns.log")
		data, _ := os.ReadFile(p)
		os.WriteFile(p, bytes.Replace(data, []byte("example.org"), []byte("example.net"), 1), 0o644)
		entries, _ := hashTree(cp)
		os.WriteFile(filepath.Join(cp, ManifestFile), formatManifest(entries), 0o644)
		_, err := Verify(context.Background(), cp)
		if err == nil || !strings.Contains(err.Error(), "runs/r1/dns.log: differs from a fresh analysis") {
			t.Fatalf("verify: %v", err)
		}
	})
}

func TestBuildIsDeterministic(t *testing.T) {
	r1, _ := writeRun(t, testcapture.Config{RunID: "r1"})
	r2, _ := writeRun(t, testcapture.Config{RunID: "r2", Names: []string{"example.org", "tracker.example.net"},
		Start: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)})
	for _, anon := range []bool{false, true} {
		o := meta()
		o.Anonymize = anon
		a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
		if _, err := Build(context.Background(), []string{r1, r2}, a, o); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		if _, err := Build(context.Background(), []string{r2, r1}, b, o); err != nil { // order of arguments must not matter
			t.Fatal(err)
		}
		fa, fb := treeDigest(t, a), treeDigest(t, b)
		if len(fa) == 0 || len(fa) != len(fb) {
			t.Fatalf("anon=%v: %d vs %d files", anon, len(fa), len(fb))
		}
		for k, v := range fa {
			if fb[k] != v {
				t.Errorf("anon=%v: %s differs between builds: %q vs %q", anon, k, v, fb[k])
			}
		}
	}
}

func TestAnonymize(t *testing.T) {
	needTshark(t)
	c := testcapture.Config{RunID: "r1"}
	run, counts := writeRun(t, c)
	plainOut := filepath.Join(t.TempDir(), "plain")
	if _, err := Build(context.Background(), []string{run}, plainOut, meta()); err != nil {
		t.Fatal(err)
	}
	o := meta()
	o.Anonymize = true
	out := filepath.Join(t.TempDir(), "anon")
	res, err := Build(context.Background(), []string{run}, out, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("warnings: %q", res.Warnings)
	const (
		mac, ip, host = "52:54:00:12:34:56", "10.77.0.57", "labguest-7"
		gwMAC, gw     = "52:54:00:ab:cd:ef", "10.77.0.1"
	)
	rd := filepath.Join(out, "runs", "r1")
	captures := []string{filepath.Join(rd, "capture.pcapng")}
	steps, _ := filepath.Glob(filepath.Join(rd, "steps", "*.pcapng"))
	captures = append(captures, steps...)
	for _, p := range captures {
		fields := tshark(t, "-r", p, "-T", "fields", "-E", "separator=|",
			"-e", "eth.src", "-e", "eth.dst", "-e", "ip.src", "-e", "ip.dst", "-e", "arp.src.hw_mac", "-e", "arp.src.proto_ipv4",
			"-e", "dhcp.hw.mac_addr", "-e", "dhcp.option.hostname", "-e", "dhcp.ip.your", "-e", "dhcp.option.requested_ip_address",
			"-e", "dns.qry.name", "-e", "dns.a")
		all := strings.Join(fields, "\n")
		for _, bad := range []string{mac, ip, host, gwMAC, gw + "|", "10.77."} {
			if strings.Contains(all, bad) {
				t.Errorf("%s: tshark still shows %q:\n%s", filepath.Base(p), bad, all)
			}
		}
		goods := []string{"02:00:00:00:00:01", "192.0.2.2"}
		switch filepath.Base(p) {
		case "capture.pcapng":
			goods = append(goods, "host000000|", "host000000.lan")
		case "01-boot.pcapng":
			goods = append(goods, "host000000|")
		case "02-browse.pcapng":
			goods = append(goods, "host000000.lan")
		}
		for _, good := range goods {
			if !strings.Contains(all, good) {
				t.Errorf("%s: tshark does not show the pseudonym %q", filepath.Base(p), good)
			}
		}
		// Checksums stay valid (the generator's were all valid).
		bad := tshark(t, "-r", p, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
			"-Y", "ip.checksum.status == \"Bad\" || udp.checksum.status == \"Bad\" || tcp.checksum.status == \"Bad\" || _ws.malformed || _ws.expert.severity >= \"error\"")
		if len(bad) > 0 {
			t.Errorf("%s: %d packets with bad checksums or malformed after anonymisation: %q", filepath.Base(p), len(bad), bad)
		}
		data, _ := os.ReadFile(p)
		hw, _ := net.ParseMAC(mac)
		for _, b := range [][]byte{hw, []byte(host), net.ParseIP(ip).To4()} {
			if bytes.Contains(data, b) {
				t.Errorf("%s: bytes %x still present", filepath.Base(p), b)
			}
		}
	}
	if n := len(tshark(t, "-r", filepath.Join(rd, "steps", "02-browse.pcapng"), "-T", "fields", "-e", "frame.number")); n != counts.Browse {
		t.Errorf("anonymised browse step has %d packets, want %d", n, counts.Browse)
	}
	// Text files name nothing of the lab.
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if d.IsDir() || strings.HasSuffix(p, ".pcapng") || strings.HasSuffix(p, ".png") {
			return nil
		}
		data, _ := os.ReadFile(p)
		for _, bad := range []string{mac, strings.ToUpper(mac), ip, host, gw + "\"", "10.77.0.0/24"} {
			if bytes.Contains(data, []byte(bad)) {
				t.Errorf("%s still contains %q", p, bad)
			}
		}
		return nil
	})
	// The fresh analysis sees the pseudonyms, and otherwise the same facts.
	var an, pl schema.Analysis
	readJSON(t, filepath.Join(rd, "analysis.json"), &an)
	readJSON(t, filepath.Join(plainOut, "runs", "r1", "analysis.json"), &pl)
	if an.Host.MAC != "02:00:00:00:00:01" || an.Host.IP != "192.0.2.2" || an.Host.DHCPHostname != "host000000" {
		t.Errorf("anonymised host: %+v", an.Host)
	}
	if pl.Host.MAC != mac || pl.Host.DHCPHostname != host {
		t.Errorf("plain host: %+v", pl.Host)
	}
	names := func(a schema.Analysis) string {
		var s []string
		for _, d := range a.Destinations {
			s = append(s, d.Name+"/"+strings.Join(d.Protocols, ","))
		}
		return strings.Join(s, " ")
	}
	if names(an) != strings.NewReplacer(gw+"/", "192.0.2.1/", ip+"/", "192.0.2.2/").Replace(names(pl)) {
		t.Errorf("destinations differ:\nanon  %s\nplain %s", names(an), names(pl))
	}
	if an.Summary.Packets != pl.Summary.Packets || an.Summary.FrameBytes != pl.Summary.FrameBytes {
		t.Errorf("summary differs: %+v vs %+v", an.Summary, pl.Summary)
	}
	var mf struct {
		Network struct{ Subnet, Gateway string }
		Machine struct{ MAC, IP string }
	}
	readJSON(t, filepath.Join(rd, "manifest.json"), &mf)
	if mf.Network.Subnet != "192.0.2.0/24" || mf.Network.Gateway != "192.0.2.1" || mf.Machine.MAC != "02:00:00:00:00:01" || mf.Machine.IP != "192.0.2.2" {
		t.Errorf("anonymised manifest: %+v", mf)
	}
	if _, err := Verify(context.Background(), out); err != nil {
		t.Fatalf("verify anonymised bundle: %v", err)
	}
}

func TestChecksumAdjustMatchesRecompute(t *testing.T) {
	// A checksum updated incrementally equals one computed from scratch, and
	// a wrong checksum stays wrong by the same amount.
	data := []byte{0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0, 0, 10, 77, 0, 57, 10, 77, 0, 1}
	full := func(b []byte) uint16 {
		c := append([]byte(nil), b...)
		c[10], c[11] = 0, 0
		return ^fold(sum16(c))
	}
	ck := full(data)
	putCsum(data[10:], ck)
	old := append([]byte(nil), data[12:20]...)
	copy(data[12:20], []byte{192, 0, 2, 2, 192, 0, 2, 1})
	putCsum(data[10:], adjustCsum(ck, sum16(old), sum16(data[12:20])))
	if got, want := uint16(data[10])<<8|uint16(data[11]), full(data); got != want {
		t.Fatalf("incremental %04x, from scratch %04x", got, want)
	}
	bad := ck ^ 0x0101
	nb := adjustCsum(bad, sum16(old), sum16(data[12:20]))
	if nb == full(data) {
		t.Fatal("a wrong checksum became right")
	}
}

func TestSplitRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello world, not a capture"),
		"truncated": {0x0A, 0x0D, 0x0D, 0x0A, 0x1c, 0, 0, 0, 0x4D, 0x3C},
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o644)
		_, _, err := splitCapture(p, nil, func(string) (io.Writer, error) { return &bytes.Buffer{}, nil })
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func readJSON(t *testing.T, p string, v any) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

func sameFile(t *testing.T, a, b string) bool {
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func flipLastByte(p string) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	data[len(data)-2] ^= 0x20
	return os.WriteFile(p, data, 0o644)
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// treeDigest maps each path to its content hash, mode and mtime.
func treeDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st, _ := os.Stat(p)
		v := st.Mode().String() + " " + st.ModTime().UTC().Format(time.RFC3339Nano)
		if !d.IsDir() {
			sum, _, _ := fsutil.FileSHA256(p)
			v += " " + sum
		}
		out[rel] = v
		return nil
	})
	return out
}

// TestMeasure prints build and verify times for a larger capture
// (FIRSTBOOT_MEASURE=N names, 10 packets each).
func TestMeasure(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FIRSTBOOT_MEASURE"))
	if n == 0 {
		t.Skip("set FIRSTBOOT_MEASURE=<names>")
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("host%d.example%d.net", i, i%50)
	}
	run, _ := writeRun(t, testcapture.Config{RunID: "big", Names: names})
	st, _ := os.Stat(filepath.Join(run, "capture.pcapng"))
	for _, anon := range []bool{false, true} {
		o := meta()
		o.Anonymize = anon
		out := filepath.Join(t.TempDir(), "b")
		start := time.Now()
		res, err := Build(context.Background(), []string{run}, out, o)
		if err != nil {
			t.Fatal(err)
		}
		build := time.Since(start)
		start = time.Now()
		if _, err := Verify(context.Background(), out); err != nil {
			t.Fatal(err)
		}
		t.Logf("anonymize=%v: capture %d bytes, %d packets; bundle %d files %d bytes; build %s, verify %s",
			anon, st.Size(), res.Runs[0].Analysis.Summary.Packets, res.Files, res.Bytes, build.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
}
