package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/firstboot/firstboot/internal/fsutil"
)

// FetchResult summarises a download.
type FetchResult struct {
	Path  string
	Bytes int64
	// AlreadyPresent is true when dest already had the wanted content.
	AlreadyPresent bool
	// Resumed counts attempts that continued a partial file with a Range request.
	Resumed int
	// Restarts counts attempts that had to start over (the server ignored Range).
	Restarts int
	// Attempts counts GET requests that returned a response.
	Attempts int
}

// ErrChecksum marks a download whose sha256 is not the expected one.
var ErrChecksum = errors.New("sha256 mismatch")

// Fetch downloads url to dest, verifying its sha256 (hex). The bytes go to
// dest+".part" first; an interrupted transfer (connection reset, truncated
// body, stall) continues from the .part file's end with a Range request, and
// starts over when the server ignores Range. Only a verified file is renamed
// to dest; a mismatch deletes the .part file.
func Fetch(ctx context.Context, url, wantSHA256, dest string, r Retry, p Progress) (*FetchResult, error) {
	want := strings.ToLower(strings.TrimSpace(wantSHA256))
	if !isHex64(want) {
		return nil, fmt.Errorf("fetch: sha256 %q is not 64 hex digits", wantSHA256)
	}
	if p == nil {
		p = nopProgress{}
	}
	r = r.withDefaults()
	res := &FetchResult{Path: dest}
	if sum, n, err := fsutil.FileSHA256(dest); err == nil && sum == want {
		res.AlreadyPresent, res.Bytes = true, n
		return res, nil
	}
	part := dest + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	defer f.Close()
	// Hash what an earlier run left, then keep hashing as bytes arrive.
	h := sha256.New()
	have, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("fetch: reading %s: %w", part, err)
	}
	c, _ := newClient(r, nil)
	total := int64(-1)
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > r.Max {
			return res, fmt.Errorf("fetch: %s: giving up after %d interrupted transfer(s): %w; run the command again to resume from %d bytes", redact(url), attempt, lastErr, have)
		}
		if attempt > 0 {
			wait := min(r.WaitMin<<min(attempt-1, 16), r.WaitMax)
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(wait):
			}
		}
		done, err := fetchOnce(ctx, c, url, f, h, &have, &total, r.IdleTimeout, res, p)
		if err != nil {
			var perm permanentError
			if errors.As(err, &perm) || ctx.Err() != nil {
				return res, fmt.Errorf("fetch: %s: %w", redact(url), err)
			}
			lastErr = err
			continue
		}
		if done {
			break
		}
	}
	res.Bytes = have
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		f.Close()
		os.Remove(part)
		return res, fmt.Errorf("fetch: %s: %w: got %s, want %s; the partial file %s was deleted", redact(url), ErrChecksum, got, want, part)
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("fetch: %w", err)
	}
	if err := f.Close(); err != nil {
		return res, fmt.Errorf("fetch: %w", err)
	}
	if err := os.Rename(part, dest); err != nil {
		return res, fmt.Errorf("fetch: %w", err)
	}
	return res, nil
}

type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// fetchOnce makes one GET (go-retryablehttp retries connection errors and
// 5xx within it) and appends the body. It returns done when the file is
// complete (or the server has no more to give).
func fetchOnce(ctx context.Context, c *retryablehttp.Client, url string, f *os.File, h hash.Hash, have, total *int64, idle time.Duration, res *FetchResult, p Progress) (bool, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := retryablehttp.NewRequestWithContext(actx, http.MethodGet, url, nil)
	if err != nil {
		return false, permanentError{err}
	}
	// Range is set before each try: a retry inside go-retryablehttp resends it unchanged,
	// which is right because nothing was appended in between.
	if *have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", *have))
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	res.Attempts++
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, end, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != *have {
			// Not the range asked for: start over from the beginning.
			if err := restart(f, h, have); err != nil {
				return false, permanentError{err}
			}
			res.Restarts++
			return false, fmt.Errorf("server sent range %q for bytes=%d-", resp.Header.Get("Content-Range"), *have)
		}
		_ = end
		*total = size
		if *have > 0 {
			res.Resumed++
		}
	case http.StatusOK:
		if *have > 0 {
			if err := restart(f, h, have); err != nil {
				return false, permanentError{err}
			}
			res.Restarts++
		}
		*total = resp.ContentLength
	case http.StatusRequestedRangeNotSatisfiable:
		_, _, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if ok && size == *have {
			return true, nil // already complete
		}
		if err := restart(f, h, have); err != nil {
			return false, permanentError{err}
		}
		res.Restarts++
		return false, errors.New("server refused the range; starting over")
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return false, permanentError{fmt.Errorf("server answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))}
	}
	p.Start(url, *total)
	// A watchdog cancels the request when nothing arrives for idle.
	timer := time.AfterFunc(idle, cancel)
	defer timer.Stop()
	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			timer.Reset(idle)
			if _, err := f.Write(buf[:n]); err != nil {
				return false, permanentError{err}
			}
			h.Write(buf[:n])
			*have += int64(n)
			p.Bytes(*have)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if actx.Err() != nil && ctx.Err() == nil {
				return false, fmt.Errorf("no data for %s", idle)
			}
			return false, fmt.Errorf("transfer interrupted at byte %d: %w", *have, rerr)
		}
	}
	if *total >= 0 && *have < *total {
		return false, fmt.Errorf("transfer ended at byte %d of %d", *have, *total)
	}
	return true, nil
}

func restart(f *os.File, h hash.Hash, have *int64) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h.Reset()
	*have = 0
	return nil
}

// parseContentRange parses "bytes start-end/size" (size may be "*": -1) and "bytes */size".
func parseContentRange(s string) (start, end, size int64, ok bool) {
	s, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, sz, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, 0, false
	}
	size = -1
	if sz != "*" {
		v, err := strconv.ParseInt(sz, 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		size = v
	}
	if rng == "*" {
		return -1, -1, size, true
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, 0, false
	}
	return start, end, size, true
}
