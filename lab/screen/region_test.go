package screen

import (
	"image"
	"image/color"
	"testing"
)

func TestRegionDiff(t *testing.T) {
	screen := image.NewRGBA(image.Rect(0, 0, 100, 50))
	for y := 0; y < 50; y++ {
		for x := 0; x < 100; x++ {
			screen.Set(x, y, color.RGBA{uint8(x), uint8(y), 100, 255})
		}
	}
	// A reference of the region, cut from the screen itself, then with 10 of
	// its 100 pixels changed.
	ref := image.NewRGBA(image.Rect(0, 0, 10, 10))
	for y := 0; y < 10; y++ {
		for x := 0; x < 10; x++ {
			ref.Set(x, y, screen.At(20+x, 30+y))
		}
	}
	if d, err := RegionDiff(screen, ref, []int{20, 30, 10, 10}); err != nil || d != 0 {
		t.Fatalf("identical region: diff %v, err %v", d, err)
	}
	for x := 0; x < 10; x++ {
		ref.Set(x, 0, color.RGBA{255, 255, 255, 255})
	}
	if d, _ := RegionDiff(screen, ref, []int{20, 30, 10, 10}); d != 0.1 {
		t.Errorf("10 changed pixels of 100: diff %v, want 0.1", d)
	}
	// A full-screen reference compared on a region.
	if d, err := RegionDiff(screen, screen, []int{0, 0, 5, 5}); err != nil || d != 0 {
		t.Errorf("full-size reference: diff %v, err %v", d, err)
	}
	if _, err := RegionDiff(screen, ref, []int{95, 45, 10, 10}); err == nil {
		t.Error("region outside the screen accepted")
	}
	if _, err := RegionDiff(screen, image.NewRGBA(image.Rect(0, 0, 3, 3)), nil); err == nil {
		t.Error("reference of the wrong size accepted")
	}
}
