package train

import (
	"flag"

	"github.com/pkg/errors"
)

// Flags are the training flags every training command has, beside its own.
type Flags struct {
	// GradAccum is -grad_accum: micro-batches per optimiser step.
	GradAccum int `json:"grad_accum"`
	// SaveEvery is -save_every: steps between checkpoints (0: only when
	// interrupted).
	SaveEvery int `json:"save_every"`
	// Resume is -resume: continue the unfinished run in the output folder.
	Resume bool `json:"-"`
}

// Register adds -grad_accum, -save_every and -resume to fs, bound to f,
// whose values are the defaults.
func (f *Flags) Register(fs *flag.FlagSet) {
	if f.GradAccum == 0 {
		f.GradAccum = 1
	}
	fs.IntVar(&f.GradAccum, "grad_accum", f.GradAccum, "micro-batches per optimiser step (gradient accumulation): each optimiser step trains on batch size × grad_accum × MPI ranks examples")
	fs.IntVar(&f.SaveEvery, "save_every", f.SaveEvery, "write a checkpoint into -out every N optimiser steps (0: only when interrupted); -resume continues from it")
	fs.BoolVar(&f.Resume, "resume", f.Resume, "continue the unfinished run in -out from its checkpoint, exactly as if it had not stopped (give the same flags)")
}

// Check validates the flags.
func (f Flags) Check() error {
	switch {
	case f.GradAccum < 1:
		return errors.Errorf("-grad_accum %d: give at least 1", f.GradAccum)
	case f.SaveEvery < 0:
		return errors.Errorf("-save_every %d: give 0 (only when interrupted) or more", f.SaveEvery)
	}
	return nil
}

// Fill gives the flags a configuration built in code left at zero their
// defaults (-grad_accum 1).
func (f *Flags) Fill() {
	if f.GradAccum == 0 {
		f.GradAccum = 1
	}
}
