package train

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lilygo/lily/internal/memcheck"
	"github.com/pkg/errors"
)

// ExitInterrupted is the exit status of a command stopped by Ctrl-C or
// SIGTERM after it saved what was done: 128 + SIGINT, as shells report a
// process killed by Ctrl-C, so scripts can tell it from a finished run.
const ExitInterrupted = 130

// WithInterrupt returns a context cancelled by Ctrl-C or SIGTERM, so a
// training loop can stop cleanly after its current step; call stop when done.
func WithInterrupt(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// Command is a command's body: it parses args, runs with ctx (cancelled by
// Ctrl-C) and writes its report to stdout, progress and usage to stderr.
type Command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Main runs a command as a program's main function and exits (ending the
// MPI world if the command started one with World), with the Go heap
// limited to the memory available (memcheck.LimitHeap): 0 when it
// succeeded or printed its help, ExitInterrupted when Ctrl-C or SIGTERM
// stopped it (it saves what was done before returning), 1 on an error,
// which is printed on one line after the program's name, without the stack
// trace %+v would add.
func Main(name string, cmd Command) {
	memcheck.LimitHeap()
	ctx, stop := WithInterrupt(context.Background())
	err := cmd(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	if ferr := endWorld(err); err == nil {
		err = ferr
	}
	os.Exit(exitCode(name, err, interrupted, os.Stderr))
}

// exitCode prints err, if any, and returns the exit status.
func exitCode(name string, err error, interrupted bool, stderr io.Writer) int {
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		if !interrupted {
			return 1
		}
	}
	if interrupted {
		return ExitInterrupted
	}
	return 0
}
