package screen

import (
	"fmt"
	"image"
)

// DefaultTolerance is the fraction of region pixels allowed to differ.
const DefaultTolerance = 0.02

// pixelThreshold is how far (0–65535 per channel) a pixel may drift before it
// counts as different: screens anti-alias and blink cursors.
const pixelThreshold = 0x2000

// RegionDiff returns the fraction of pixels in region (x, y, w, h; nil for the
// whole screen) that differ between screen and ref. A reference the size of the
// region is compared to the region; a reference the size of the screen is
// compared at the same coordinates.
func RegionDiff(screen, ref image.Image, region []int) (float64, error) {
	sb := screen.Bounds()
	r := sb
	if region != nil {
		r = image.Rect(region[0], region[1], region[0]+region[2], region[1]+region[3]).Add(sb.Min)
	}
	if !r.In(sb) || r.Empty() {
		return 1, fmt.Errorf("region %v is outside the %dx%d screen", region, sb.Dx(), sb.Dy())
	}
	rb := ref.Bounds()
	var off image.Point
	switch {
	case rb.Dx() == r.Dx() && rb.Dy() == r.Dy():
		off = rb.Min.Sub(r.Min)
	case rb.Dx() == sb.Dx() && rb.Dy() == sb.Dy():
		off = rb.Min.Sub(sb.Min)
	default:
		return 1, fmt.Errorf("reference is %dx%d; want the region's size %dx%d or the screen's %dx%d",
			rb.Dx(), rb.Dy(), r.Dx(), r.Dy(), sb.Dx(), sb.Dy())
	}
	differ := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if !similar(screen.At(x, y).RGBA, ref.At(x+off.X, y+off.Y).RGBA) {
				differ++
			}
		}
	}
	return float64(differ) / float64(r.Dx()*r.Dy()), nil
}

func similar(a, b func() (r, g, b, a uint32)) bool {
	ar, ag, ab, _ := a()
	br, bg, bb, _ := b()
	return absDiff(ar, br) <= pixelThreshold && absDiff(ag, bg) <= pixelThreshold && absDiff(ab, bb) <= pixelThreshold
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}
