package analyzer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoldenHTTPS compares the outputs of a capture of real HTTPS clients
// (curl over HTTP/1.1 and HTTP/2, openssl s_client, quic-go over HTTP/3,
// see crosscheck's TestHTTPSDecryption) whose key log travels in a
// Decryption Secrets Block, against testdata/golden/https; the streamed
// outputs (http.log gains its tls column at the end) and the in-memory ones
// must be the same bytes.
func TestGoldenHTTPS(t *testing.T) {
	ctx := context.Background()
	in := filepath.Join("testdata", "https-dsb.pcapng")
	mem, err := AnalyzeFile(ctx, in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, lf := range []string{LogsTSV, LogsJSON} {
		streamed, inMemory := t.TempDir(), t.TempDir()
		if _, err := AnalyzeFileTo(ctx, in, Options{}, streamed, lf); err != nil {
			t.Fatal(err)
		}
		if err := WriteOutputs(inMemory, mem, lf); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"analysis.json", "http.log", "ssl.log", "conn.log"} {
			got, err := os.ReadFile(filepath.Join(streamed, name))
			if err != nil {
				t.Fatal(err)
			}
			other, _ := os.ReadFile(filepath.Join(inMemory, name))
			if !bytes.Equal(got, other) {
				t.Errorf("%s (%s): streamed and in-memory outputs differ", name, lf)
			}
			if lf == LogsJSON {
				if name == "analysis.json" {
					continue
				}
				name = "json-" + name
			}
			golden := filepath.Join("testdata", "golden", "https", name+".golden")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s; run go test -run TestGoldenHTTPS -update and review the diff", name, golden)
			}
		}
	}
	// The same capture without its secrets block, with the key log given
	// instead, decrypts the same; without either, nothing is decrypted and
	// http.log keeps its usual columns.
	keys, err := os.ReadFile(filepath.Join("testdata", "https-keys.log"))
	if err != nil {
		t.Fatal(err)
	}
	side, err := AnalyzeFile(ctx, filepath.Join("testdata", "https.pcap"), Options{TLSKeyLog: keys})
	if err != nil {
		t.Fatal(err)
	}
	if len(side.HTTP) != len(mem.HTTP) || len(side.HTTP) == 0 {
		t.Errorf("with the key log: %d http records, from the secrets block: %d", len(side.HTTP), len(mem.HTTP))
	}
	dir := t.TempDir()
	if _, err := AnalyzeFileTo(ctx, filepath.Join("testdata", "https.pcap"), Options{}, dir, LogsTSV); err != nil {
		t.Fatal(err)
	}
	httpLog, _ := os.ReadFile(filepath.Join(dir, "http.log"))
	if strings.Contains(string(httpLog), "\ttls") {
		t.Errorf("http.log without secrets has a tls column")
	}
}
