package analyzer

import (
	"fmt"
	"testing"
)

// TestVersionStrings: hex16 renders every value as fmt does.
func TestVersionStrings(t *testing.T) {
	for v := range 1 << 16 {
		if got, want := hex16(uint16(v)), fmt.Sprintf("0x%04x", v); got != want {
			t.Fatalf("hex16(%#x) = %q, want %q", v, got, want)
		}
	}
}
