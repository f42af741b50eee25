package scenarios

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"time"

	"github.com/firstboot/firstboot/lab/screen"
)

// waitScreen takes screenshots until the region matches the reference image.
func (env *Env) waitScreen(ctx context.Context, a *Action) error {
	args := a.WaitScreen
	ctx, cancel := context.WithTimeout(ctx, a.Timeout(10*time.Minute))
	defer cancel()
	ref, err := loadPNG(args.Reference)
	if err != nil {
		return fmt.Errorf("wait_screen reference: %w", err)
	}
	tol := args.Tolerance
	if tol == 0 {
		tol = screen.DefaultTolerance
	}
	dir := filepath.Join(env.Dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	shot := filepath.Join(dir, ".wait_screen.png")
	defer os.Remove(shot)
	best := 1.0
	for {
		if err := env.Machine.Screenshot(ctx, shot); err != nil {
			return fmt.Errorf("wait_screen: %w", err)
		}
		img, err := loadPNG(shot)
		if err != nil {
			return fmt.Errorf("wait_screen: %w", err)
		}
		diff, err := screen.RegionDiff(img, ref, args.Region)
		if err != nil {
			return fmt.Errorf("wait_screen: %w", err)
		}
		best = min(best, diff)
		if diff <= tol {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the screen never matched %s (closest: %.1f%% of pixels differed, tolerance %.1f%%): %w",
				args.Reference, best*100, tol*100, context.Cause(ctx))
		case <-time.After(time.Second):
		}
	}
}

func loadPNG(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}
