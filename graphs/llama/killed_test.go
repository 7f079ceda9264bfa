package llama

import (
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/atomicfile/atomictest"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// TestSaveHFKilledAtEveryStep kills SaveHF at every step of replacing a
// model with another: version v has hidden_dim 4(v+1) and every weight v,
// so weights and config.json of two saves do not load together.
func TestSaveHFKilledAtEveryStep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "model")
	save := func(v int) error {
		c := tinyConfig(false, Halves)
		c.HiddenDim = 4 * (v + 1)
		s, err := NewStore(c, tensor.Float32, 1)
		if err != nil {
			return err
		}
		atomictest.Fill(s.Params(), float64(v))
		return SaveHF(dir, c, s)
	}
	read := func() (int, error) {
		c, s, err := LoadHF(dir, tensor.Float32)
		if err != nil {
			return 0, err
		}
		v, err := atomictest.CommonValue(s.Params())
		if err == nil && c.HiddenDim != 4*(int(v)+1) {
			err = errors.Errorf("hidden_dim %d with weights %v", c.HiddenDim, v)
		}
		return int(v), err
	}
	atomictest.Versions(t, dir, save, read)
}
