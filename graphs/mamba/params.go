package mamba

import (
	"math"
	"math/rand/v2"
	"strings"

	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// linearSpec is a linear weight stored [in, out] (PyTorch [out, in]) with
// PyTorch's default nn.Linear initialisation U(±1/√in), divided by div.
func linearSpec(name string, in, out int, div float64) layers.ParamSpec {
	bound := 1 / math.Sqrt(float64(in)) / div
	return layers.ParamSpec{Name: name, Shape: tensor.Shape{in, out}, Torch: layers.Transposed, Init: uniform(bound)}
}

// uniform draws U(−bound, bound).
func uniform(bound float64) layers.Init {
	return func(rng *rand.Rand, vals []float64) {
		for i := range vals {
			vals[i] = (2*rng.Float64() - 1) * bound
		}
	}
}

// dtBiasInit is the reference's dt_proj bias: the inverse softplus of a step
// size drawn log-uniformly in [dtMin, dtMax] and clamped below at floor, so
// that softplus(bias) starts in that range.
func dtBiasInit(dtMin, dtMax, floor float64) layers.Init {
	lo, hi := math.Log(dtMin), math.Log(dtMax)
	return func(rng *rand.Rand, vals []float64) {
		for i := range vals {
			dt := math.Max(math.Exp(lo+rng.Float64()*(hi-lo)), floor)
			vals[i] = dt + math.Log(-math.Expm1(-dt))
		}
	}
}

// aLogInit is S4D-real's A_log: log(1), …, log(d_state) in every row.
func aLogInit(n int) layers.Init {
	return func(_ *rand.Rand, vals []float64) {
		for i := range vals {
			vals[i] = math.Log(float64(i%n + 1))
		}
	}
}

// blockSpecs returns the parameters of block l, in module order.
func (c Config) blockSpecs(l int) []layers.ParamSpec {
	d, di, r, n, k := c.HiddenSize, c.DInner(), c.TimeStepRank, c.StateSize, c.ConvKernel
	p := mixerPath(l)
	specs := []layers.ParamSpec{
		{Name: LayerPath(l) + ".norm.weight", Shape: tensor.Shape{d}, Init: layers.Constant(1)},
		linearSpec(p+".in_proj.weight", d, 2*di, 1),
	}
	if c.UseBias {
		specs = append(specs, layers.ParamSpec{Name: p + ".in_proj.bias", Shape: tensor.Shape{2 * di}})
	}
	// nn.Conv1d's default initialisation has fan-in k (one input channel
	// per group), for the weight and the bias.
	convBound := 1 / math.Sqrt(float64(k))
	specs = append(specs, layers.ParamSpec{Name: p + ".conv1d.weight", Shape: tensor.Shape{di, k}, TorchShape: []int{di, 1, k}, Init: uniform(convBound)})
	if c.UseConvBias {
		specs = append(specs, layers.ParamSpec{Name: p + ".conv1d.bias", Shape: tensor.Shape{di}, Init: uniform(convBound)})
	}
	dtStd := c.TimeStepScale / math.Sqrt(float64(r))
	dtInit := uniform(dtStd)
	if c.TimeStepInitScheme == "constant" {
		dtInit = layers.Constant(dtStd)
	}
	outDiv := 1.0
	if c.RescalePrenormResidual {
		outDiv = math.Sqrt(float64(c.NumHiddenLayers))
	}
	specs = append(specs,
		linearSpec(p+".x_proj.weight", di, r+2*n, 1),
		layers.ParamSpec{Name: p + ".dt_proj.weight", Shape: tensor.Shape{r, di}, Torch: layers.Transposed, Init: dtInit},
		layers.ParamSpec{Name: p + ".dt_proj.bias", Shape: tensor.Shape{di}, Init: dtBiasInit(c.TimeStepMin, c.TimeStepMax, c.TimeStepFloor)},
		layers.ParamSpec{Name: p + ".A_log", Shape: tensor.Shape{di, n}, Init: aLogInit(n)},
		layers.ParamSpec{Name: p + ".D", Shape: tensor.Shape{di}, Init: layers.Constant(1)},
		linearSpec(p+".out_proj.weight", di, d, outDiv),
	)
	if c.UseBias {
		specs = append(specs, layers.ParamSpec{Name: p + ".out_proj.bias", Shape: tensor.Shape{d}})
	}
	return specs
}

// ParamSpecs lists every parameter of the model (MambaForCausalLM) in
// Hugging Face's module order, with the store's names, shapes and PyTorch
// layouts and the reference initialisation: the embedding N(0,
// initializer_range²); RMSNorm weights 1; in_proj, x_proj, out_proj and an
// untied lm_head as PyTorch's nn.Linear (U(±1/√in)), their biases 0;
// conv1d as nn.Conv1d (U(±1/√conv_kernel), bias too); dt_proj and A_log, D
// as the reference Mamba module initialises them (see Config).
func (c Config) ParamSpecs() []layers.ParamSpec {
	specs := []layers.ParamSpec{{Name: EmbeddingName, Shape: tensor.Shape{c.VocabSize, c.HiddenSize}, Init: layers.Normal(c.InitializerRange)}}
	for l := 0; l < c.NumHiddenLayers; l++ {
		specs = append(specs, c.blockSpecs(l)...)
	}
	specs = append(specs, layers.ParamSpec{Name: NormFName, Shape: tensor.Shape{c.HiddenSize}, Init: layers.Constant(1)})
	if !c.TieWordEmbeddings {
		specs = append(specs, linearSpec(LMHeadName, c.HiddenSize, c.VocabSize, 1))
	}
	return specs
}

// NumParams is the number of parameters of the model c describes, from the
// sizes alone and in float64, so that a memory estimate can refuse absurd
// sizes before anything (not even the list of parameters) is allocated.
func (c Config) NumParams() float64 {
	none := c
	none.NumHiddenLayers = 0
	return layers.SpecsSize(none.ParamSpecs()) + float64(c.NumHiddenLayers)*layers.SpecsSize(c.blockSpecs(0))
}

// InitStore adds a freshly initialised Mamba language model to s (see
// ParamSpecs), drawing from a generator seeded by seed. The parameters are
// trainable (a fresh model is meant to be trained); call s.Freeze() before
// attaching an adapter to fine-tune only the adapter.
func InitStore(s *layers.Store, cfg Config, seed uint64) error {
	if s == nil {
		return errors.New("mamba.InitStore: nil store")
	}
	if err := cfg.Validate(); err != nil {
		return errors.Wrap(err, "mamba.InitStore")
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d616d6261))
	for _, spec := range cfg.ParamSpecs() {
		if _, err := s.New(spec, true, rng); err != nil {
			return errors.Wrap(err, "mamba.InitStore")
		}
	}
	return nil
}

// NoWeightDecay reports whether the named model parameter should be
// excluded from weight decay when training the whole model: A_log and D
// (marked _no_weight_decay by the reference Mamba module), and, as in the
// GPT-style recipe the Mamba paper trains with, biases and norm weights.
func NoWeightDecay(name string) bool {
	for _, suffix := range []string{".A_log", ".D", ".bias", ".norm.weight", NormFName} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}
