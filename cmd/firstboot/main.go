// Command firstboot records and analyses what a freshly installed operating
// system says on the network.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/firstboot/firstboot/internal/gcfloor"
)

// Exit codes, by error kind (restic style), so schedulers can act on them.
const (
	exitOK          = 0
	exitError       = 1 // the run or command failed
	exitUsage       = 2 // bad flags, bad scenario, bad input file
	exitExpectation = 3 // the run worked but an expectation failed
	exitInterrupted = 130
)

// usageError marks errors caused by what the user asked for.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// errExpectationFailed is returned (wrapped) when a run or report finds a failed expectation.
var errExpectationFailed = errors.New("expectation failed")

// gcFloor is the heap the collector lets grow before its first cycles: an
// analysis of a 100 MB capture then collects not at all (see gcfloor).
const gcFloor = 64 << 20

func main() {
	gcfloor.Start(gcFloor) // the process ends with main: no need to stop it
	// Signals become context cancellation so every resource's cleanup runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	err := newRootCmd().ExecuteContext(ctx)
	os.Exit(exitCode(ctx, err))
}

func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "firstboot:", err)
	var ue usageError
	switch {
	case ctx.Err() != nil:
		return exitInterrupted
	case errors.Is(err, errExpectationFailed):
		return exitExpectation
	case errors.As(err, &ue):
		return exitUsage
	default:
		return exitError
	}
}
