package dataset

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/results/dataset/testcapture"
	"github.com/firstboot/firstboot/results/manifest"
)

// appendSecrets adds a Decryption Secrets Block with an NSS key log to a
// little-endian pcapng file, as the lab's capture writes them.
func appendSecrets(t *testing.T, path string, keyLog []byte) {
	t.Helper()
	size := 12 + 8 + (len(keyLog)+3)&^3
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, blockDSB)
	binary.LittleEndian.PutUint32(b[4:], uint32(size))
	binary.LittleEndian.PutUint32(b[8:], 0x544c534b)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(keyLog)))
	copy(b[16:], keyLog)
	binary.LittleEndian.PutUint32(b[size-4:], uint32(size))
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestTLSSecrets builds a run whose capture carries TLS secrets, with and
// without --keep-tls-secrets (and anonymised): the secrets block and
// tls-keys.log are in the bundle only when kept, the README says which,
// and verify passes either way.
func TestTLSSecrets(t *testing.T) {
	run, _ := writeRun(t, testcapture.Config{RunID: "r1"})
	keyLog := []byte("CLIENT_RANDOM " + strings.Repeat("ab", 32) + " " + strings.Repeat("cd", 48) + "\n")
	appendSecrets(t, filepath.Join(run, "capture.pcapng"), keyLog)
	if err := os.WriteFile(filepath.Join(run, manifest.TLSKeysFile), keyLog, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name            string
		keep, anonymize bool
	}{{"left out", false, false}, {"kept", true, false}, {"left out, anonymised", false, true}, {"kept, anonymised", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "bundle")
			opts := meta()
			opts.KeepTLSSecrets, opts.Anonymize = tc.keep, tc.anonymize
			res, err := Build(context.Background(), []string{run}, out, opts)
			if err != nil {
				t.Fatal(err)
			}
			rd := filepath.Join(out, "runs", "r1")
			has, err := hasSecrets(filepath.Join(rd, "capture.pcapng"))
			if err != nil || has != tc.keep {
				t.Errorf("secrets block in the bundled capture: %v (%v), want %v", has, err, tc.keep)
			}
			for _, step := range []string{"01-boot.pcapng", "02-browse.pcapng"} {
				if has, _ := hasSecrets(filepath.Join(rd, "steps", step)); has != tc.keep {
					t.Errorf("%s: secrets block %v, want %v", step, has, tc.keep)
				}
			}
			if _, err := os.Stat(filepath.Join(rd, manifest.TLSKeysFile)); (err == nil) != tc.keep {
				t.Errorf("tls-keys.log in the bundle: %v, want %v", err == nil, tc.keep)
			}
			readme, _ := os.ReadFile(filepath.Join(out, "README.md"))
			want := "were left out"
			if tc.keep {
				want = "keep their Decryption Secrets Blocks"
			}
			if !strings.Contains(string(readme), want) {
				t.Errorf("README lacks %q", want)
			}
			for _, w := range res.Warnings {
				if strings.Contains(w, "unknown pcapng block") {
					t.Errorf("warning about the secrets block: %s", w)
				}
			}
			if _, err := Verify(context.Background(), out); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
}
