package mamba

import (
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/atomicfile/atomictest"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// TestSaveHFKilledAtEveryStep kills SaveHF at every step of replacing a
// model with another: version v has a vocabulary of 32+v and every
// weight v, so weights and config.json of two saves do not load together.
func TestSaveHFKilledAtEveryStep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "model")
	save := func(v int) error {
		c := TinyConfig()
		c.VocabSize = 32 + v
		s, err := layers.NewStore(tensor.Float32)
		if err != nil {
			return err
		}
		if err := InitStore(s, c, 1); err != nil {
			return err
		}
		atomictest.Fill(s.Params(), float64(v))
		return SaveHF(dir, s, c)
	}
	read := func() (int, error) {
		s, err := layers.NewStore(tensor.Float32)
		if err != nil {
			return 0, err
		}
		c, err := LoadHF(dir, s)
		if err != nil {
			return 0, err
		}
		v, err := atomictest.CommonValue(s.Params())
		if err == nil && c.VocabSize != 32+int(v) {
			err = errors.Errorf("vocabulary %d with weights %v", c.VocabSize, v)
		}
		return int(v), err
	}
	atomictest.Versions(t, dir, save, read)
}
