package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/firstboot/firstboot/internal/fsutil"
)

// Target is where one file goes: a presigned list's entry, or derived from --to.
type Target struct {
	// Path is the file's path relative to the published directory (slashes).
	Path string `json:"path"`
	// PUT is the upload URL.
	PUT string `json:"put"`
	// HEAD is the URL to check the object; "" means it cannot be checked
	// (the file is always uploaded and verified by the PUT response only).
	HEAD string `json:"head,omitempty"`
	// Headers are sent with the PUT (e.g. ones a presigned URL was signed with).
	Headers map[string]string `json:"headers,omitempty"`
}

// ReadPresigned reads a presigned list: a JSON array of Target, or an object
// {"files": [...]}.
func ReadPresigned(path string) ([]Target, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list []Target
	if err := json.Unmarshal(data, &list); err != nil {
		var obj struct {
			Files []Target `json:"files"`
		}
		if err2 := json.Unmarshal(data, &obj); err2 != nil {
			return nil, fmt.Errorf("%s: want a JSON list of {\"path\", \"put\", \"head\", \"headers\"}: %w", path, err)
		}
		list = obj.Files
	}
	for i, t := range list {
		if t.Path == "" || t.PUT == "" {
			return nil, fmt.Errorf("%s: entry %d needs \"path\" and \"put\"", path, i+1)
		}
	}
	return list, nil
}

// Options tune Publish.
type Options struct {
	// To is the base URL: each file goes to To + "/" + its relative path.
	To string
	// Presigned, when set, gives each file's URLs instead; every file needs an entry.
	Presigned []Target
	Retry     Retry
	Progress  Progress
}

// FileResult says what happened to one file.
type FileResult struct {
	Path   string
	Size   int64
	SHA256 string
	// Action is "uploaded" or "skipped" (already present with the same size and sha256).
	Action string
	// Verified is "sha256", "size" (the store gave no checksum) or "put" (no HEAD URL: the PUT's answer only).
	Verified string
}

// Result summarises a publish.
type Result struct {
	Files                 []FileResult
	Uploaded, Skipped     int
	BytesSent, BytesTotal int64
}

// Publish uploads every file of dir (MANIFEST last, so its presence remotely
// means the rest is there).
func Publish(ctx context.Context, dir string, opts Options) (*Result, error) {
	if opts.Progress == nil {
		opts.Progress = nopProgress{}
	}
	r := opts.Retry.withDefaults()
	files, err := localFiles(dir)
	if err != nil {
		return nil, err
	}
	targets := map[string]Target{}
	if len(opts.Presigned) > 0 {
		for _, t := range opts.Presigned {
			targets[t.Path] = t
		}
		for _, f := range files {
			if _, ok := targets[f]; !ok {
				return nil, fmt.Errorf("publish: the presigned list has no entry for %s", f)
			}
		}
	} else {
		base, err := url.Parse(opts.To)
		if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
			return nil, fmt.Errorf("publish: --to %q: want an http:// or https:// URL", opts.To)
		}
		for _, f := range files {
			u := strings.TrimSuffix(opts.To, "/") + "/" + escapePath(f)
			targets[f] = Target{Path: f, PUT: u, HEAD: u}
		}
	}
	res := &Result{}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		fr, sent, err := publishFile(ctx, filepath.Join(dir, filepath.FromSlash(f)), targets[f], r, opts.Progress)
		if err != nil {
			return res, fmt.Errorf("publish: %s: %w", f, err)
		}
		fr.Path = f
		res.Files = append(res.Files, *fr)
		res.BytesTotal += fr.Size
		res.BytesSent += sent
		if fr.Action == "uploaded" {
			res.Uploaded++
		} else {
			res.Skipped++
		}
	}
	return res, nil
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// localFiles lists dir's regular files (relative, sorted), MANIFEST last.
func localFiles(dir string) ([]string, error) {
	var out []string
	hasManifest := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("publish: %s is not a regular file", rel)
		}
		if rel == "MANIFEST" {
			hasManifest = true
			return nil
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	sort.Strings(out)
	if hasManifest {
		out = append(out, "MANIFEST")
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("publish: %s has no files", dir)
	}
	return out, nil
}

func publishFile(ctx context.Context, path string, t Target, r Retry, p Progress) (*FileResult, int64, error) {
	sum, size, err := fsutil.FileSHA256(path)
	if err != nil {
		return nil, 0, err
	}
	fr := &FileResult{Size: size, SHA256: sum}
	plain, _ := newClient(r, nil)
	if t.HEAD != "" {
		st, err := head(ctx, plain, t.HEAD, nil)
		if err != nil {
			return nil, 0, fmt.Errorf("checking the remote copy: %w", err)
		}
		if st.exists && st.size == size && st.sha256 == sum {
			fr.Action, fr.Verified = "skipped", "sha256"
			p.Skipped(t.Path, size)
			return fr, 0, nil
		}
	}
	// Before each retry, ask whether the last attempt landed after all (the
	// store kept the file but the answer was lost): then it is not sent twice.
	landed := func(ctx context.Context) bool {
		if t.HEAD == "" {
			return false
		}
		st, err := head(ctx, plain, t.HEAD, nil)
		return err == nil && st.exists && st.size == size && st.sha256 == sum
	}
	c, last := newClient(r, landed)
	var sent atomic.Int64 // a retried attempt's body may still be read by the old connection
	body := func() (io.Reader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		p.Start(t.Path, size)
		return &countingFile{f: f, size: size, p: p, sent: &sent}, nil
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPut, t.PUT, retryablehttp.ReaderFunc(body))
	if err != nil {
		return nil, 0, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(ChecksumHeader, sum)
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	req.SetResponseHandler(func(resp *http.Response) error {
		if resp.StatusCode/100 != 2 {
			return nil // judged below
		}
		if got := checksumOf(resp.Header); got != "" && got != sum {
			return fmt.Errorf("the store reports sha256 %s for what was sent (%s)", got, sum)
		}
		return nil
	})
	resp, err := c.Do(req)
	if err != nil {
		p.Failed(t.Path)
		return nil, sent.Load(), fmt.Errorf("uploading to %s: %w (files already uploaded are skipped when you run publish again)", redact(t.PUT), err)
	}
	if resp != nil {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			p.Failed(t.Path)
			return nil, sent.Load(), fmt.Errorf("uploading to %s: the store answered %s: %s", redact(t.PUT), resp.Status, strings.TrimSpace(string(msg)))
		}
	}
	_ = last
	fr.Action = "uploaded"
	// Verify.
	if t.HEAD == "" {
		fr.Verified = "put"
	} else {
		st, err := head(ctx, plain, t.HEAD, nil)
		switch {
		case err != nil:
			return nil, sent.Load(), fmt.Errorf("verifying the upload: %w", err)
		case !st.exists:
			return nil, sent.Load(), errors.New("verifying the upload: the store does not have the file after a successful PUT")
		case st.size != size:
			return nil, sent.Load(), fmt.Errorf("verifying the upload: the store has %d bytes, the file %d", st.size, size)
		case st.sha256 != "" && st.sha256 != sum:
			return nil, sent.Load(), fmt.Errorf("verifying the upload: the store has sha256 %s, the file %s", st.sha256, sum)
		case st.sha256 == "":
			fr.Verified = "size"
		default:
			fr.Verified = "sha256"
		}
	}
	p.Done(t.Path, fr.Verified)
	return fr, sent.Load(), nil
}

// countingFile reports upload progress; LenReader lets retryablehttp set Content-Length.
type countingFile struct {
	f    *os.File
	size int64
	p    Progress
	n    int64
	sent *atomic.Int64
}

func (c *countingFile) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	c.n += int64(n)
	c.sent.Add(int64(n))
	c.p.Bytes(c.n)
	return n, err
}

func (c *countingFile) Len() int     { return int(c.size - c.n) }
func (c *countingFile) Close() error { return c.f.Close() }
