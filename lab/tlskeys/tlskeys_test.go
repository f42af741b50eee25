package tlskeys

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/firstboot/firstboot/internal/testenv"
)

// The capture and key log of real clients (curl, openssl s_client, quic-go)
// that the analyzer's tests also use.
var (
	testPcap = filepath.Join("..", "..", "analyzer", "testdata", "https.pcap")
	testKeys = filepath.Join("..", "..", "analyzer", "testdata", "https-keys.log")
)

func need(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not installed (scripts/provision.sh installs it)", tool)
		}
	}
}

// tsharkRequests lists the HTTP/1.1 and HTTP/2 request paths tshark
// decrypts from path on its own (one pass, no preferences).
func tsharkRequests(t *testing.T, path string) []string {
	out, err := exec.Command("tshark", "-r", path, "-n", "-T", "fields", "-Y", "http.request || http2.headers.method",
		"-e", "http.request.uri", "-e", "http2.headers.path").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	return strings.Fields(string(out))
}

// TestIntoCaptureLateSecrets puts the secrets where a capture writing them
// as sessions go would at worst have them, after every packet (TLS 1.2's
// master secret comes after the client's Finished), and checks that tshark
// decrypts nothing from that file and every request once IntoCapture moved
// them ahead of the packets.
func TestIntoCaptureLateSecrets(t *testing.T) {
	need(t, "tshark", "editcap")
	keys, err := os.ReadFile(testKeys)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "capture.pcapng")
	if out, err := exec.Command("editcap", "-F", "pcapng", testPcap, path).CombinedOutput(); err != nil {
		t.Fatalf("editcap: %v\n%s", err, out)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// One block per line, as the capture gets them from the responders.
	for _, line := range bytes.SplitAfter(keys, []byte("\n")) {
		if len(line) > 0 {
			f.Write(dsb(binary.LittleEndian, line))
		}
	}
	f.Close()
	if got := tsharkRequests(t, path); len(got) != 0 {
		t.Fatalf("tshark decrypted %v with the secrets after the packets: the test shows nothing", got)
	}
	if err := IntoCapture(path, keys); err != nil {
		t.Fatal(err)
	}
	got := tsharkRequests(t, path)
	want := []string{"/one?x=1", "/post", "/two/page.html", "/missing", "/twelve", "/cbc", "/openssl"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tshark decrypted %v, want %v", got, want)
	}
	// One secrets block, before the first packet.
	out, _ := exec.Command("tshark", "-r", path, "-c", "1", "-T", "fields", "-e", "frame.number").Output()
	if strings.TrimSpace(string(out)) != "1" {
		t.Errorf("packets gone: %q", out)
	}
	raw, _ := os.ReadFile(path)
	if n := countDSB(t, raw); n != 1 {
		t.Errorf("%d secrets blocks, want 1", n)
	}
	// Nothing to add: the file stays.
	before, _ := os.ReadFile(path)
	if err := IntoCapture(path, nil); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("IntoCapture without secrets changed the file")
	}
}

func countDSB(t *testing.T, b []byte) int {
	n := 0
	for len(b) >= 12 {
		size := binary.LittleEndian.Uint32(b[4:])
		if size < 12 || int(size) > len(b) {
			t.Fatalf("bad block length %d", size)
		}
		if binary.LittleEndian.Uint32(b) == blockDSB {
			n++
		}
		b = b[size:]
	}
	return n
}

func TestIntoCaptureDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "capture.pcapng")
	os.WriteFile(path, []byte("not a capture at all"), 0o644)
	if err := IntoCapture(path, []byte("CLIENT_RANDOM aa bb\n")); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want one naming the file", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "not a capture at all" {
		t.Error("a damaged capture was changed")
	}
}

func TestLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tls-keys.log")
	l, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Write([]byte("CLIENT_RANDOM 01 02\n"))
	var mu sync.Mutex
	var sunk []string
	l.SetSink(func(b []byte) { mu.Lock(); sunk = append(sunk, string(b)); mu.Unlock() })
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); l.Write([]byte("SERVER_TRAFFIC_SECRET_0 03 04\n")) }()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.Count(string(b), "\n") != 11 || len(sunk) != 10 {
		t.Errorf("file %q, sink got %d lines", b, len(sunk))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode())
	}
}
