package llama

import (
	"path/filepath"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// LoadHFPeak estimates, from config.json alone, the bytes LoadHFWith holds
// at its peak when it keeps the weight matrices in weights (tensor.Float32,
// tensor.Float64, lilyop.BFloat16 or lilyop.Float16) and the norms in
// float32: the store, plus, for matrices in a float type, the copy of the
// largest one that is read before it is transposed. A half-precision
// matrix is transposed while it is read, so it adds nothing. It is a lower bound: Go's garbage collector
// lets the heap grow past it.
func LoadHFPeak(dir string, weights tensor.Dtype) (float64, error) {
	dir = atomicfile.Resolve(dir)
	c, err := LoadHFConfig(filepath.Join(dir, hfConfigFile))
	if err != nil {
		return 0, err
	}
	if weights != tensor.Float32 && weights != tensor.Float64 && !lilyop.IsHalfDtype(weights) {
		return 0, errors.Errorf("llama.LoadHFPeak: weights dtype %v (want float32, float64, bfloat16 or float16)", weights)
	}
	size := float64(weights.Size())
	var total, biggest float64
	for _, spec := range paramSpecs(c) {
		n := float64(spec.Shape.TotalSize())
		if spec.Shape.Dims() >= 2 {
			total += size * n
			biggest = max(biggest, n)
		} else {
			total += 4 * n
		}
	}
	if !lilyop.IsHalfDtype(weights) {
		total += size * biggest
	}
	return total, nil
}
