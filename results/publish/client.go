// Package publish uploads a dataset bundle to an HTTP store and downloads
// images, both resilient to flaky networks: retries with backoff on
// connection errors and 5xx (go-retryablehttp), resumable downloads (Range
// requests into a .part file), and sha256 verification at both ends.
//
// The remote convention (what a store must do for skipping and verifying):
//
//   - PUT <url> stores the request body. firstboot sends Content-Length and
//     the header X-Checksum-Sha256: <lower-case hex sha256 of the body>; a
//     store that checks it answers 4xx on a mismatch.
//   - HEAD <url> answers 200 with Content-Length and the stored object's
//     sha256 in one of: X-Checksum-Sha256 (hex), x-amz-checksum-sha256
//     (base64, as S3 gives with x-amz-checksum-mode: ENABLED), or an ETag of
//     the form "sha256:<hex>" (or a bare 64-hex-digit ETag); 404 when absent.
//
// A file is skipped when HEAD reports the same size and sha256. A HEAD that
// reports the size but no checksum never counts as "already there" (the file
// is uploaded), and after an upload it verifies the size only, which the
// result says.
package publish

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// ChecksumHeader carries a body's sha256 (hex) on PUT and HEAD.
const ChecksumHeader = "X-Checksum-Sha256"

// Retry tunes retries; zero fields take the defaults.
type Retry struct {
	// Max is the number of retries after the first attempt (default 5).
	Max int
	// WaitMin and WaitMax bound the exponential backoff (default 1s, 30s).
	WaitMin, WaitMax time.Duration
	// HeaderTimeout bounds the wait for response headers (default 60s).
	HeaderTimeout time.Duration
	// IdleTimeout aborts a download that receives nothing for this long (default 60s).
	IdleTimeout time.Duration
	// HTTPClient replaces the default transport (tests).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

func (r Retry) withDefaults() Retry {
	if r.Max <= 0 {
		r.Max = 5
	}
	if r.WaitMin <= 0 {
		r.WaitMin = time.Second
	}
	if r.WaitMax <= 0 {
		r.WaitMax = 30 * time.Second
	}
	if r.WaitMax < r.WaitMin {
		r.WaitMax = r.WaitMin
	}
	if r.HeaderTimeout <= 0 {
		r.HeaderTimeout = 60 * time.Second
	}
	if r.IdleTimeout <= 0 {
		r.IdleTimeout = 60 * time.Second
	}
	return r
}

// newClient builds a retrying client. The retry policy is go-retryablehttp's
// default (connection errors, 429, 5xx except 501); check, when set, is
// consulted before each retry and can declare the work done (see Publish).
func newClient(r Retry, check func(ctx context.Context) bool) (*retryablehttp.Client, *lastOutcome) {
	c := retryablehttp.NewClient()
	c.RetryMax = r.Max
	c.RetryWaitMin, c.RetryWaitMax = r.WaitMin, r.WaitMax
	if r.HTTPClient != nil {
		c.HTTPClient = r.HTTPClient
	} else {
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: r.HeaderTimeout,
			TLSHandshakeTimeout:   30 * time.Second,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		}
		c.HTTPClient = &http.Client{Transport: tr}
	}
	c.Logger = nil
	if r.Logger != nil {
		c.Logger = slogAdapter{r.Logger}
	}
	last := &lastOutcome{}
	c.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		retry, perr := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
		last.attempts++
		last.err, last.status = err, ""
		if resp != nil {
			last.status = resp.Status
		}
		if retry && check != nil && check(ctx) {
			last.landed = true
			return false, nil
		}
		return retry, perr
	}
	c.ErrorHandler = func(resp *http.Response, err error, tries int) (*http.Response, error) {
		if resp != nil {
			resp.Body.Close()
		}
		if last.landed {
			return nil, nil
		}
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			return nil, fmt.Errorf("giving up after %d attempt(s): %w", tries, err)
		case resp != nil:
			return nil, fmt.Errorf("giving up after %d attempt(s): last response %s", tries, resp.Status)
		case err != nil:
			return nil, err
		}
		return nil, fmt.Errorf("giving up after %d attempt(s)", tries)
	}
	return c, last
}

// lastOutcome remembers what the last attempt did, for error messages.
type lastOutcome struct {
	attempts int
	err      error
	status   string
	landed   bool
}

type slogAdapter struct{ l *slog.Logger }

func (s slogAdapter) Error(msg string, kv ...any) { s.l.Warn(msg, kv...) }
func (s slogAdapter) Info(msg string, kv ...any)  { s.l.Debug(msg, kv...) }
func (s slogAdapter) Debug(msg string, kv ...any) { s.l.Debug(msg, kv...) }
func (s slogAdapter) Warn(msg string, kv ...any)  { s.l.Warn(msg, kv...) }

// remoteState is what HEAD says about an object.
type remoteState struct {
	exists bool
	size   int64
	sha256 string // "" when the store gave none
}

// head asks a store about an object. A 404 (or 403, which presigned stores
// give for absent keys) is "absent"; other non-2xx answers are errors.
func head(ctx context.Context, c *retryablehttp.Client, url string, hdr map[string]string) (remoteState, error) {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return remoteState{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("x-amz-checksum-mode", "ENABLED")
	resp, err := c.Do(req)
	if err != nil {
		return remoteState{}, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		return remoteState{}, nil
	case resp.StatusCode/100 != 2:
		return remoteState{}, fmt.Errorf("HEAD %s: %s", redact(url), resp.Status)
	}
	return remoteState{exists: true, size: resp.ContentLength, sha256: checksumOf(resp.Header)}, nil
}

// checksumOf reads a sha256 from response headers (see the package comment).
func checksumOf(h http.Header) string {
	if v := strings.ToLower(strings.TrimSpace(h.Get(ChecksumHeader))); isHex64(v) {
		return v
	}
	if v := h.Get("x-amz-checksum-sha256"); v != "" {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) == 32 {
			return hex.EncodeToString(b)
		}
	}
	etag := strings.Trim(strings.TrimPrefix(h.Get("ETag"), "W/"), `"`)
	etag = strings.TrimPrefix(strings.ToLower(etag), "sha256:")
	if isHex64(etag) {
		return etag
	}
	return ""
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// redact drops a URL's query (presigned URLs carry credentials there).
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}
