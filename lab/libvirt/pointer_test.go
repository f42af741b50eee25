package libvirt

import "testing"

// TestAbsEvent: screen pixels map onto QEMU's absolute axis 0..32767, the
// first pixel to 0 and the last to the top.
func TestAbsEvent(t *testing.T) {
	for _, tt := range []struct{ v, size, want int }{
		{0, 1280, 0}, {1279, 1280, 0x7fff}, {640, 1280, 640 * 0x7fff / 1279}, {799, 800, 0x7fff}, {0, 1, 0},
	} {
		got := absEvent("x", tt.v, tt.size)["data"].(map[string]any)["value"]
		if got != tt.want {
			t.Errorf("absEvent(%d of %d) = %v, want %d", tt.v, tt.size, got, tt.want)
		}
	}
}
