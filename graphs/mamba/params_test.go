package mamba

import (
	"testing"

	"github.com/lilygo/lily/layers"
	"gorgonia.org/tensor"
)

// NumParams agrees with the parameters InitStore allocates, and counts
// absurd sizes without building anything.
func TestNumParams(t *testing.T) {
	for _, c := range []Config{TinyConfig(), falconTiny()} {
		for _, n := range []int{1, 3} {
			c.NumHiddenLayers = n
			s, err := layers.NewStore(tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			if err := InitStore(s, c, 1); err != nil {
				t.Fatal(err)
			}
			if _, all := s.Count(); c.NumParams() != float64(all) {
				t.Errorf("%s, %d layers: NumParams %v, the store holds %d", c.ModelType, n, c.NumParams(), all)
			}
		}
	}
	c := TinyConfig()
	c.NumHiddenLayers, c.HiddenSize, c.IntermediateSize = 1e12, 1<<40, 1<<41
	if got := c.NumParams(); !(got > 1e35) {
		t.Fatalf("absurd sizes count %v parameters", got)
	}
}
