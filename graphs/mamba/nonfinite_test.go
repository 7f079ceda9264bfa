package mamba

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	"gorgonia.org/tensor"
)

// A NaN or ±Inf weight is an error naming the tensor, also when a float64
// value overflows a float32 store.
func TestNonFiniteWeightsRefused(t *testing.T) {
	c := TinyConfig()
	for _, tc := range []struct {
		value float64
		load  tensor.Dtype
		want  string
	}{
		{math.NaN(), tensor.Float64, "backbone.layers.1.mixer.D holds NaN"},
		{-1e300, tensor.Float32, "backbone.layers.1.mixer.D holds -Inf"},
	} {
		s := tinyStore(t, c, tensor.Float64, 1)
		p, _ := s.Get("backbone.layers.1.mixer.D")
		p.Value.Data().([]float64)[0] = tc.value
		dir := filepath.Join(t.TempDir(), "m")
		if err := SaveHF(dir, s, c); err != nil {
			t.Fatal(err)
		}
		into, err := layers.NewStore(tc.load)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := LoadHF(dir, into); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v loaded as %v: %v, want %q", tc.value, tc.load, err, tc.want)
		}
		if len(into.Params()) != 0 {
			t.Errorf("a refused checkpoint added %d parameters", len(into.Params()))
		}
	}
}
