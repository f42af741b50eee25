package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/firstboot/firstboot/lab/osimage"
)

// buildDebianImage is `firstboot image build debian-12|debian-13`: a stock-like
// Debian made with debootstrap from the host's Debian mirror, cached in
// <image-cache>/<release>. force rebuilds a cached image.
func buildDebianImage(ctx context.Context, a *app, release string, force bool, out io.Writer) error {
	if _, err := osimage.LookupRelease(release); err != nil {
		return usageError{fmt.Errorf("image build: %w", err)}
	}
	start := time.Now()
	img, err := osimage.Build(ctx, osimage.BuildConfig{
		CacheDir: a.cfg.ImageCache, Release: release, Force: force, Logger: a.logger,
	})
	if err != nil {
		return err
	}
	m := img.Manifest
	fmt.Fprintf(out, "image:    %s (Debian %s %s, kernel %s, %d packages)\n", release, m.Suite, m.Mirror, m.KernelRelease, len(m.Packages))
	fmt.Fprintf(out, "disk:     %s (%d bytes, virtual %d)\n", img.Disk, m.Files[osimage.FileDisk].Size, m.DiskSize)
	fmt.Fprintf(out, "kernel:   %s\n", img.Kernel)
	fmt.Fprintf(out, "initrd:   %s\n", img.Initrd)
	fmt.Fprintf(out, "cmdline:  %s\n", img.Cmdline)
	where := "on the serial console"
	if len(m.Desktop) > 0 {
		where = "on the serial console; " + osimage.UserName + " on the graphical login too"
	}
	fmt.Fprintf(out, "login:    root/%s or %s/%s %s\n", osimage.RootPassword, osimage.UserName, osimage.UserPassword, where)
	fmt.Fprintf(out, "built in: %ss; this command took %s\n", fmt.Sprint(m.BuildSeconds), time.Since(start).Round(time.Millisecond))
	return nil
}
