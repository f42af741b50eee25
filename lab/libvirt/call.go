package libvirt

import (
	"context"
	"fmt"
	"time"
)

// defaultCallTimeout bounds a libvirt call whose context has no deadline:
// go-libvirt calls take no context and can block forever on a stuck daemon.
const defaultCallTimeout = 2 * time.Minute

// call runs fn and gives up when ctx ends. fn keeps running in the background
// after a timeout (go-libvirt cannot cancel a request); its result is dropped.
func call[T any](ctx context.Context, what string, fn func() (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return r.v, fmt.Errorf("libvirt %s: %w", what, r.err)
		}
		return r.v, nil
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("libvirt %s: no answer from libvirtd: %w", what, ctx.Err())
	}
}

// call0 is call for functions that return only an error.
func call0(ctx context.Context, what string, fn func() error) error {
	_, err := call(ctx, what, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// teardownContext is a fresh bounded context for cleanups, so they still run
// when the caller's context was cancelled (Ctrl-C).
func teardownContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
}
