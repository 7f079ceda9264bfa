package roberta

import (
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/atomicfile/atomictest"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// TestSaveKilledAtEveryStep kills Save at every step of replacing a model
// with another: version v has intermediate size 4(v+1) and every weight v,
// so weights and config.json of two saves do not load together.
func TestSaveKilledAtEveryStep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "model")
	save := func(v int) error {
		c := tinyConfig()
		c.IntermediateSize = 4 * (v + 1)
		s, err := layers.NewStore(tensor.Float32)
		if err != nil {
			return err
		}
		if err := InitStore(s, c, 1); err != nil {
			return err
		}
		atomictest.Fill(s.Params(), float64(v))
		return Save(dir, s, c)
	}
	read := func() (int, error) {
		ck, err := Load(dir, LoadOptions{})
		if err != nil {
			return 0, err
		}
		v, err := atomictest.CommonValue(ck.Store.Params())
		if err == nil && ck.Config.IntermediateSize != 4*(int(v)+1) {
			err = errors.Errorf("intermediate size %d with weights %v", ck.Config.IntermediateSize, v)
		}
		return int(v), err
	}
	atomictest.Versions(t, dir, save, read)
}
