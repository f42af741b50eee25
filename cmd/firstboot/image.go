package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/firstboot/firstboot/lab/guest"
	"github.com/spf13/cobra"
)

func newImageCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build and inspect machine images",
	}
	cmd.AddCommand(newImageBuildCmd(a), newImageFetchCmd(a))
	return cmd
}

func newImageBuildCmd(a *app) *cobra.Command {
	var agent string
	var force bool
	cmd := &cobra.Command{
		Use:   "build testguest|debian-12|debian-12-desktop|debian-13",
		Short: "Build an image into the image cache (testguest: Debian kernel + busybox + qemu-guest-agent + firstboot-guest)",
		Long: "testguest is built from Debian packages (the kernel resolved from linux-image-amd64, " +
			"busybox-static, and qemu-guest-agent with the libraries it needs, so guest_exec works), " +
			"fetched with apt-get download, and the static firstboot-guest agent, " +
			"which is looked for next to this executable unless --agent is given. The image goes to " +
			"<image-cache>/testguest and is reused when nothing changed. debian-12 and debian-13 are " +
			"stock-like Debian systems made with debootstrap (with qemu-guest-agent, which sends nothing on the network); " +
			"debian-12-desktop adds LightDM's graphical login, the Xfce desktop and Firefox ESR.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("image build: name one image: testguest, debian-12, debian-12-desktop or debian-13")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "testguest" {
				if agent != "" {
					return usageError{errors.New("image build: --agent applies only to testguest")}
				}
				return buildDebianImage(cmd.Context(), a, args[0], force, cmd.OutOrStdout())
			}
			if agent == "" {
				p, err := defaultAgentPath()
				if err != nil {
					return usageError{err}
				}
				agent = p
			} else if _, err := os.Stat(agent); err != nil {
				return usageError{fmt.Errorf("image build: --agent: %w", err)}
			}
			start := time.Now()
			img, err := guest.Build(cmd.Context(), guest.BuildConfig{
				CacheDir: a.cfg.ImageCache, AgentPath: agent, Logger: a.logger, Force: force,
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "kernel:  %s (%s)\n", img.Kernel, img.Manifest.KernelFormat)
			fmt.Fprintf(out, "initrd:  %s\n", img.Initrd)
			fmt.Fprintf(out, "cmdline: %s\n", img.Cmdline)
			fmt.Fprintf(out, "sha256:  %s\n", img.SHA256)
			fmt.Fprintf(out, "took:    %s\n", time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "testguest: the static firstboot-guest binary (default: next to the firstboot executable)")
	cmd.Flags().BoolVar(&force, "force", false, "rebuild even when the cached image is up to date")
	return cmd
}

func defaultAgentPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("image build: finding firstboot-guest: %w; pass --agent", err)
	}
	p := filepath.Join(filepath.Dir(exe), "firstboot-guest")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("image build: no firstboot-guest next to %s (build it with `make build`, or CGO_ENABLED=0 go build ./cmd/firstboot-guest) or pass --agent", exe)
	}
	return p, nil
}
