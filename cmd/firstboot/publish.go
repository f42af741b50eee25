package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/results/publish"
)

func newPublishCmd(a *app) *cobra.Command {
	var (
		to, presigned string
		retries       int
	)
	cmd := &cobra.Command{
		Use:   "publish DIR --to URL | --presigned LIST.json",
		Short: "Upload a dataset (or any directory) to an HTTP store, resumably and verified",
		Long: `publish uploads every file of DIR (MANIFEST last): PUT URL/<relative path>, or to
per-file presigned URLs from a JSON list:

  [{"path": "runs/r1/capture.pcapng", "put": "https://…?X-Amz-Signature=…",
    "head": "https://…(optional)", "headers": {"Content-Type": "…"}}]

Each PUT carries X-Checksum-Sha256 (hex). Before uploading, HEAD asks whether the
file is there: it is skipped when the store reports the same size and sha256 (in
X-Checksum-Sha256, x-amz-checksum-sha256 or an ETag "sha256:<hex>"). After the
upload HEAD verifies it. Connection errors, 429 and 5xx are retried with
exponential backoff; when a retry finds the file already stored it is not sent
again. Running publish again after a failure sends only what is missing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (to == "") == (presigned == "") {
				return usageError{errors.New("publish: give exactly one of --to URL and --presigned LIST.json")}
			}
			opts := publish.Options{To: to, Retry: publish.Retry{Max: retries, Logger: a.logger}}
			if presigned != "" {
				list, err := publish.ReadPresigned(presigned)
				if err != nil {
					return usageError{fmt.Errorf("--presigned: %w", err)}
				}
				opts.Presigned = list
			} else if u, err := url.Parse(to); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usageError{fmt.Errorf("--to %q: want an http:// or https:// URL", to)}
			}
			out := cmd.OutOrStdout()
			opts.Progress = progressFor(out)
			start := time.Now()
			res, err := publish.Publish(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "publish: %d uploaded, %d already there; %d of %d bytes sent in %s\n",
				res.Uploaded, res.Skipped, res.BytesSent, res.BytesTotal, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "base URL: each file goes to URL/<relative path>")
	f.StringVar(&presigned, "presigned", "", "JSON list of per-file presigned URLs")
	f.IntVar(&retries, "retries", 5, "retries per request after the first attempt")
	return cmd
}

// progressFor draws a bar on a terminal and prints plain lines otherwise.
func progressFor(w io.Writer) publish.Progress {
	if f, ok := w.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			return publish.Bar(w)
		}
	}
	return publish.Lines(w)
}

// newImageFetchCmd is `firstboot image fetch URL --sha256 HEX [--out PATH]`,
// for the image command to add.
func newImageFetchCmd(a *app) *cobra.Command {
	var sum, out string
	cmd := &cobra.Command{
		Use:   "fetch URL --sha256 HEX [--out PATH]",
		Short: "Download an image with resume, retries and sha256 verification",
		Long: `fetch downloads URL into PATH (default: the image cache, under the URL's file name).
Bytes go to PATH.part first; an interrupted download continues from there with a Range
request (also in a later run of the command), and starts over when the server ignores
Range. The file is renamed to PATH only when its sha256 is HEX; a mismatch deletes the
.part file and fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sum == "" {
				return usageError{errors.New("image fetch: --sha256 HEX is required")}
			}
			return imageFetch(cmd.Context(), a, args[0], sum, out, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&sum, "sha256", "", "the image's sha256 (64 hex digits)")
	cmd.Flags().StringVar(&out, "out", "", "destination file (default: <image-cache>/<file name of the URL>)")
	return cmd
}

// imageFetch downloads an image with resume, retries and sha256
// verification (`firstboot image fetch URL --sha256 HEX [--out PATH]`).
// dest "" means the image cache, under the URL's file name.
func imageFetch(ctx context.Context, a *app, rawURL, sha256, dest string, out io.Writer) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Errorf("image fetch: %q: want an http:// or https:// URL", rawURL)}
	}
	if len(sha256) != 64 {
		return usageError{fmt.Errorf("image fetch: --sha256 %q: want the 64 hex digits of the image's sha256", sha256)}
	}
	if dest == "" {
		name := path.Base(u.Path)
		if name == "" || name == "/" || name == "." {
			return usageError{errors.New("image fetch: the URL names no file; pass --out PATH")}
		}
		dest = filepath.Join(a.cfg.ImageCache, name)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("image fetch: %w", err)
	}
	var p publish.Progress
	if f, ok := out.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			p = publish.Bar(out)
		}
	}
	start := time.Now()
	res, err := publish.Fetch(ctx, rawURL, sha256, dest, publish.Retry{Logger: a.logger}, p)
	if err != nil {
		return err
	}
	switch {
	case res.AlreadyPresent:
		fmt.Fprintf(out, "image fetch: %s is already there (sha256 verified)\n", dest)
	default:
		fmt.Fprintf(out, "\nimage fetch: %s (%d bytes, sha256 verified; %d resumed, %d restarted) in %s\n",
			dest, res.Bytes, res.Resumed, res.Restarts, time.Since(start).Round(time.Millisecond))
	}
	return nil
}
