//go:build !mpi

package mpi

import (
	"strings"
	"testing"
)

// TestSingleFinalize checks that every call after Finalize is an error.
func TestSingleFinalize(t *testing.T) {
	w := &World{}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"allreduce32": w.AllreduceSumFloat32(nil),
		"allreduce64": w.AllreduceSumFloat64(nil),
		"broadcast32": w.BroadcastFloat32(nil, 0),
		"broadcast64": w.BroadcastFloat64(nil, 0),
		"barrier":     w.Barrier(),
		"finalize":    w.Finalize(),
	} {
		if err == nil || !strings.Contains(err.Error(), "after Finalize") {
			t.Errorf("%s after Finalize: error %v", name, err)
		}
	}
}
