package roberta

import (
	"testing"

	"github.com/lilygo/lily/layers"
	"gorgonia.org/tensor"
)

// NumParams agrees with the parameters InitStore and AddLMHead allocate, and
// counts absurd sizes without building anything.
func TestNumParams(t *testing.T) {
	for _, layersN := range []int{1, 2, 3} {
		c := tinyConfig()
		c.NumHiddenLayers = layersN
		s, err := layers.NewStore(tensor.Float32)
		if err != nil {
			t.Fatal(err)
		}
		if err := InitStore(s, c, 1); err != nil {
			t.Fatal(err)
		}
		_, encoder := s.Count()
		if err := AddLMHead(s, c, 1); err != nil {
			t.Fatal(err)
		}
		_, all := s.Count()
		if got := c.NumParams(false); got != float64(encoder) {
			t.Errorf("%d layers: NumParams(false) = %v, the store holds %d", layersN, got, encoder)
		}
		if got := c.NumParams(true); got != float64(all) {
			t.Errorf("%d layers: NumParams(true) = %v, the store holds %d", layersN, got, all)
		}
	}
	c := tinyConfig()
	c.NumHiddenLayers, c.HiddenSize = 1e12, 1<<40
	if got := c.NumParams(true); !(got > 1e35) {
		t.Fatalf("absurd sizes count %v parameters", got)
	}
}
