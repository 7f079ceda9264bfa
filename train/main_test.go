package train

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/errors"
)

func TestExitCode(t *testing.T) {
	wrapped := errors.Wrap(errors.Wrap(errors.New("-lr NaN must be a number"), "parsing"), "finetune")
	for _, tc := range []struct {
		err         error
		interrupted bool
		code        int
		printed     string
	}{
		{nil, false, 0, ""},
		{flag.ErrHelp, false, 0, ""},
		{errors.Wrap(flag.ErrHelp, "sweep"), false, 0, ""},
		{wrapped, false, 1, "cmd: finetune: parsing: -lr NaN must be a number\n"},
		{nil, true, ExitInterrupted, ""},
		{wrapped, true, ExitInterrupted, "cmd: finetune: parsing: -lr NaN must be a number\n"},
	} {
		var stderr bytes.Buffer
		if code := exitCode("cmd", tc.err, tc.interrupted, &stderr); code != tc.code || stderr.String() != tc.printed {
			t.Errorf("%v, interrupted %v: exit %d, printed %q; want %d, %q", tc.err, tc.interrupted, code, stderr.String(), tc.code, tc.printed)
		}
	}
}

// Ctrl-C (SIGINT to this process) cancels WithInterrupt's context instead
// of killing the process.
func TestWithInterrupt(t *testing.T) {
	ctx, stop := WithInterrupt(context.Background())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGINT did not cancel the context")
	}
	if !strings.Contains(context.Cause(ctx).Error(), "interrupt") {
		t.Errorf("cause %v", context.Cause(ctx))
	}
}
