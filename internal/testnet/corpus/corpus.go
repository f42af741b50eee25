// Package corpus lets real-traffic tests store the payloads they captured as
// seeds of a fuzz target, when the test binary runs with -update-corpus.
// It is its own package, imported by tests only, so that the flag does not
// land in the commands that use internal/testnet.
package corpus

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update-corpus", false, "store captured payloads as fuzz seed corpus in testdata/fuzz")

// Save writes payloads in the `go test fuzz v1` format under
// testdata/fuzz/<target> of the package under test when -update-corpus is
// set, and does nothing otherwise. Each file is named by a hash of its
// content, so running it again adds nothing twice.
func Save(t testing.TB, target string, payloads [][]byte) {
	t.Helper()
	if !*update {
		return
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("corpus: %v", err)
	}
	for _, p := range payloads {
		sum := sha256.Sum256(p)
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", p)
		if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:8])), []byte(body), 0o644); err != nil {
			t.Fatalf("corpus: %v", err)
		}
	}
	t.Logf("stored %d seeds in %s", len(payloads), dir)
}
