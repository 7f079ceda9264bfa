package adapterfile

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/atomicfile/atomictest"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// TestSaveKilledAtEveryStep kills Save at every step of replacing one
// adapter with another: version v is a LoRA of rank v+1 whose values are
// all v, so a folder mixing two saves fails to load or mixes values.
func TestSaveKilledAtEveryStep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "adapter")
	save := func(v int) error {
		s, sites := model(t, tensor.Float32, 2, 4)
		a, err := layers.NewLoRA(layers.LoRAConfig{R: v + 1, Alpha: 1, TargetModules: []string{"query"}})
		if err != nil {
			return err
		}
		if err := layers.Attach(s, a, sites, rand.New(rand.NewPCG(1, 1))); err != nil {
			return err
		}
		atomictest.Fill(s.Trainable(), float64(v))
		return Save(dir, s, a, sites, Options{})
	}
	read := func() (int, error) {
		s, sites := model(t, tensor.Float32, 2, 4)
		a, err := Load(dir, s, sites)
		if err != nil {
			return 0, err
		}
		v, err := atomictest.CommonValue(s.Trainable())
		if r := a.(*layers.LoRA).Config().R; err == nil && r != int(v)+1 {
			err = errors.Errorf("rank %d with values %v", r, v)
		}
		return int(v), err
	}
	atomictest.Versions(t, dir, save, read)
}
