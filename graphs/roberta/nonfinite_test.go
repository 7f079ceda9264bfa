package roberta

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
	c := tinyConfig()
	for _, tc := range []struct {
		value float64
		load  tensor.Dtype
		want  string
	}{
		{math.NaN(), tensor.Float64, "roberta.encoder.layer.1.output.dense.bias holds NaN"},
		{1e300, tensor.Float32, "roberta.encoder.layer.1.output.dense.bias holds +Inf"},
	} {
		s, err := layers.NewStore(tensor.Float64)
		if err != nil {
			t.Fatal(err)
		}
		if err := InitStore(s, c, 1); err != nil {
			t.Fatal(err)
		}
		p, _ := s.Get("roberta.encoder.layer.1.output.dense.bias")
		p.Value.Data().([]float64)[2] = tc.value
		dir := filepath.Join(t.TempDir(), "m")
		if err := Save(dir, s, c); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir, LoadOptions{Dtype: tc.load}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v loaded as %v: %v, want %q", tc.value, tc.load, err, tc.want)
		}
	}
}
