package layers

import (
	"math"
	"math/rand/v2"
	"sort"

	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// Layout says how a parameter is laid out in PyTorch compared with the store.
type Layout int

const (
	// SameLayout: PyTorch holds the same elements in the same order (its
	// shape may still differ, e.g. Lily's B pool [num_B·r, d_out]).
	SameLayout Layout = iota
	// Transposed: a matrix that PyTorch stores as [out, in] while the store
	// holds [in, out] so that graphs compute x·W.
	Transposed
)

// Param is one named tensor of a model or an adapter.
type Param struct {
	// Name is unique in the store. Adapter parameters are named after the
	// PEFT keys without the "base_model.model." prefix.
	Name string
	// Value is the tensor that every graph bound to the store reads and that
	// solvers update in place. Its dtype is the store's (Store.Dtype), or
	// lilyop.BFloat16 or lilyop.Float16 for a frozen parameter kept in half
	// precision.
	Value *tensor.Dense
	// Trainable parameters are returned by Graph.Learnables.
	Trainable bool
	// Torch describes the PyTorch layout, for checkpoint and adapter files.
	Torch Layout
	// TorchShape is the shape PyTorch uses; nil means the store's shape (or
	// its transpose for Transposed).
	TorchShape []int
}

// Store owns the parameters of one model and its adapters. It is not safe for
// concurrent modification; graphs may read it concurrently.
//
// The store's dtype (float32 or float64) is the one graphs compute in: every
// trainable parameter, input, activation, gradient and optimiser moment has
// it. A frozen parameter may instead be kept in bfloat16 (lilyop.BFloat16),
// half of float32's memory: loaders read bfloat16 checkpoints into such
// tensors directly, ConvertFrozen rounds float32 ones on request, and the
// graphs' ops read them as they are (matrix products and embedding lookups
// widen the values on the fly, small tensors such as norm gains through
// Graph.Float). A bfloat16 parameter is never trained: Add refuses a
// trainable one and Graph.Machine one that was made trainable later. The
// same holds for float16 (lilyop.Float16), which loaders keep for float16
// checkpoints and ConvertFrozen produces on request.
type Store struct {
	dtype  tensor.Dtype
	params map[string]*Param
	order  []string
}

// NewStore returns an empty store for float32 or float64 parameters.
func NewStore(dt tensor.Dtype) (*Store, error) {
	if dt != tensor.Float32 && dt != tensor.Float64 {
		return nil, errors.Errorf("layers.NewStore: dtype %v is not supported; use tensor.Float32 or tensor.Float64", dt)
	}
	return &Store{dtype: dt, params: map[string]*Param{}}, nil
}

// Dtype is the element type graphs compute in: that of every trainable
// parameter and of every frozen one not kept in bfloat16.
func (s *Store) Dtype() tensor.Dtype { return s.dtype }

// Add puts an existing tensor into the store under name.
func (s *Store) Add(p *Param) error {
	if p == nil || p.Name == "" {
		return errors.New("layers.Store.Add: parameter without a name")
	}
	if _, dup := s.params[p.Name]; dup {
		return errors.Errorf("layers.Store.Add: parameter %q already exists", p.Name)
	}
	if p.Value == nil {
		return errors.Errorf("layers.Store.Add: parameter %q has no value", p.Name)
	}
	if dt := p.Value.Dtype(); lilyop.IsHalfDtype(dt) && p.Trainable {
		return errors.Errorf("layers.Store.Add: parameter %q is %s and trainable; only frozen parameters may be bfloat16 or float16, trainable ones are %v", p.Name, halfName(dt), s.dtype)
	} else if dt != s.dtype && !lilyop.IsHalfDtype(dt) {
		return errors.Errorf("layers.Store.Add: parameter %q is %v, the store holds %v (or bfloat16 or float16 when frozen)", p.Name, dt, s.dtype)
	}
	if n, err := Elements(p.TorchShape); p.TorchShape != nil && (err != nil || n != p.Value.Shape().TotalSize()) {
		return errors.Errorf("layers.Store.Add: parameter %q: torch shape %v does not hold %v", p.Name, p.TorchShape, p.Value.Shape())
	}
	if p.Torch == Transposed && p.Value.Dims() != 2 {
		return errors.Errorf("layers.Store.Add: parameter %q: only matrices can be transposed, shape %v", p.Name, p.Value.Shape())
	}
	s.params[p.Name] = p
	s.order = append(s.order, p.Name)
	return nil
}

// New allocates a parameter of the given shape, fills it with init (nil
// means zeros) drawing from rng, and adds it.
func (s *Store) New(spec ParamSpec, trainable bool, rng *rand.Rand) (*Param, error) {
	if len(spec.Shape) == 0 {
		return nil, errors.Errorf("layers.Store.New: parameter %q has no shape", spec.Name)
	}
	for _, d := range spec.Shape {
		if d <= 0 {
			return nil, errors.Errorf("layers.Store.New: parameter %q has shape %v", spec.Name, spec.Shape)
		}
	}
	n, err := Elements(spec.Shape)
	if err != nil {
		return nil, errors.Wrapf(err, "layers.Store.New: parameter %q", spec.Name)
	}
	vals := make([]float64, n)
	if spec.Init != nil {
		if rng == nil {
			return nil, errors.Errorf("layers.Store.New: parameter %q needs a random generator for its initialisation; pass a *rand.Rand, not nil", spec.Name)
		}
		spec.Init(rng, vals)
	}
	p := &Param{Name: spec.Name, Value: FromFloat64(s.dtype, spec.Shape, vals), Trainable: trainable, Torch: spec.Torch, TorchShape: spec.TorchShape}
	return p, s.Add(p)
}

// Get returns the named parameter.
func (s *Store) Get(name string) (*Param, bool) {
	p, ok := s.params[name]
	return p, ok
}

// Params returns every parameter in insertion order.
func (s *Store) Params() []*Param {
	out := make([]*Param, len(s.order))
	for i, n := range s.order {
		out[i] = s.params[n]
	}
	return out
}

// Trainable returns the trainable parameters in insertion order.
func (s *Store) Trainable() []*Param {
	var out []*Param
	for _, n := range s.order {
		if p := s.params[n]; p.Trainable {
			out = append(out, p)
		}
	}
	return out
}

// Freeze marks every parameter frozen; adapters added afterwards are the only
// trainable ones.
func (s *Store) Freeze() {
	for _, p := range s.params {
		p.Trainable = false
	}
}

// Names returns the sorted parameter names.
func (s *Store) Names() []string {
	out := append([]string(nil), s.order...)
	sort.Strings(out)
	return out
}

// Count returns the number of trainable and of all parameter elements.
func (s *Store) Count() (trainable, total int) {
	for _, p := range s.params {
		n := p.Value.Shape().TotalSize()
		total += n
		if p.Trainable {
			trainable += n
		}
	}
	return trainable, total
}

// Bytes returns the memory that the trainable and all parameters' values
// take: 2 bytes an element in bfloat16, 4 in float32, 8 in float64
// (gradients and optimiser moments not included).
func (s *Store) Bytes() (trainable, total int64) {
	for _, p := range s.params {
		n := int64(p.Value.Shape().TotalSize()) * int64(ElementSize(p.Value.Dtype()))
		total += n
		if p.Trainable {
			trainable += n
		}
	}
	return trainable, total
}

// ElementSize is the size in bytes of one element of dtype dt (2 for
// lilyop.BFloat16 and lilyop.Float16), 0 for the zero Dtype.
func ElementSize(dt tensor.Dtype) int {
	if dt.Type == nil {
		return 0
	}
	return int(dt.Size())
}

// halfName is "bfloat16" or "float16" for lilyop.BFloat16 or
// lilyop.Float16, dt's name otherwise: for error messages.
func halfName(dt tensor.Dtype) string {
	switch dt {
	case lilyop.BFloat16:
		return "bfloat16"
	case lilyop.Float16:
		return "float16"
	}
	return dt.String()
}

// Matrices selects the parameters of rank 2 (weight matrices and embedding
// tables, where a transformer's memory is, and what MatMul, MatMulNT and
// Embed read in bfloat16), for ConvertFrozen. A model with other frozen
// matrices that its ops read (Mamba's A_log) needs a selector of its own:
// an op without a bfloat16 path refuses a bfloat16 input when the graph is
// built.
func Matrices(p *Param) bool { return p.Value.Dims() == 2 }

// ConvertFrozen converts the frozen parameters that sel selects (nil:
// all) to dt: lilyop.BFloat16 rounds float32 and float64 values to the
// nearest bfloat16 (ties to even, as PyTorch's .to(torch.bfloat16)),
// lilyop.Float16 to the nearest float16 (ties to even, magnitudes from 65520
// up to infinity, as .to(torch.float16)); a half-precision parameter is
// rounded once from its exact value to the other half; the store's dtype
// widens half-precision values back, exactly. Trainable parameters
// are never converted, and selecting one is an error; parameters already in
// dt are left alone. Nothing is changed when an error is returned. It
// replaces each converted Param's Value, so build graphs after converting:
// a graph built before holds the previous tensors. A typical call keeps
// norms and biases in float32 and halves the rest:
//
//	err := store.ConvertFrozen(lilyop.BFloat16, layers.Matrices)
//
// It returns the number of parameters converted.
func (s *Store) ConvertFrozen(dt tensor.Dtype, sel func(*Param) bool) (int, error) {
	if dt != s.dtype && !lilyop.IsHalfDtype(dt) {
		return 0, errors.Errorf("layers.Store.ConvertFrozen: dtype %v is neither the store's (%v) nor bfloat16 or float16", dt, s.dtype)
	}
	var todo []*Param
	for _, n := range s.order {
		p := s.params[n]
		if (sel != nil && !sel(p)) || p.Value.Dtype() == dt {
			continue
		}
		if p.Trainable {
			return 0, errors.Errorf("layers.Store.ConvertFrozen: parameter %q is trainable; only frozen parameters are converted to %v", p.Name, dt)
		}
		todo = append(todo, p)
	}
	vals := make([]*tensor.Dense, len(todo))
	for i, p := range todo {
		var err error
		switch {
		case dt == lilyop.BFloat16:
			vals[i], err = lilyop.ToBF16(p.Value)
		case dt == lilyop.Float16:
			vals[i], err = lilyop.ToF16(p.Value)
		case p.Value.Dtype() == lilyop.Float16:
			vals[i], err = lilyop.FromF16(p.Value, dt)
		default:
			vals[i], err = lilyop.FromBF16(p.Value, dt)
		}
		if err != nil {
			return 0, errors.Wrapf(err, "layers.Store.ConvertFrozen: parameter %q", p.Name)
		}
	}
	for i, p := range todo {
		p.Value = vals[i]
	}
	return len(todo), nil
}

// ParamSpec describes a parameter by shape, before anything is allocated.
type ParamSpec struct {
	Name       string
	Shape      tensor.Shape
	Init       Init // nil: zeros
	Torch      Layout
	TorchShape []int
}

// Init fills vals (in row-major order) with initial values.
type Init func(rng *rand.Rand, vals []float64)

// KaimingUniform is PyTorch's default nn.Linear initialisation
// (kaiming_uniform_ with a=√5): U(−1/√fanIn, 1/√fanIn).
func KaimingUniform(fanIn int) Init {
	bound := 1 / math.Sqrt(float64(fanIn))
	return func(rng *rand.Rand, vals []float64) {
		for i := range vals {
			vals[i] = (2*rng.Float64() - 1) * bound
		}
	}
}

// Normal draws from N(0, std²), as Hugging Face initialises embeddings and
// linears (std 0.02).
func Normal(std float64) Init {
	return func(rng *rand.Rand, vals []float64) {
		for i := range vals {
			vals[i] = rng.NormFloat64() * std
		}
	}
}

// Constant fills every element with v.
func Constant(v float64) Init {
	return func(_ *rand.Rand, vals []float64) {
		for i := range vals {
			vals[i] = v
		}
	}
}

// FromFloat64 builds a tensor of dtype dt holding vals.
func FromFloat64(dt tensor.Dtype, shape []int, vals []float64) *tensor.Dense {
	if dt == tensor.Float32 {
		f := make([]float32, len(vals))
		for i, v := range vals {
			f[i] = float32(v)
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(f))
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), vals...)))
}

// FirstNonFinite returns the index of the first NaN or ±Inf in v, or -1.
func FirstNonFinite[T float32 | float64](v []T) int {
	for i, x := range v {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return i
		}
	}
	return -1
}

// FirstNonFiniteBF16 returns the index of the first NaN or ±Inf in v, or
// -1.
func FirstNonFiniteBF16(v []gemm.BF16) int {
	for i, x := range v {
		if x&0x7f80 == 0x7f80 { // all exponent bits set
			return i
		}
	}
	return -1
}

// FirstNonFiniteF16 returns the index of the first NaN or ±Inf in v, or
// -1.
func FirstNonFiniteF16(v []gemm.F16) int {
	for i, x := range v {
		if x&0x7c00 == 0x7c00 { // all exponent bits set
			return i
		}
	}
	return -1
}

// CheckFinite returns an error naming the tensor when t, a float32, float64,
// bfloat16 or float16 tensor, holds a NaN or ±Inf: what a loader says of a corrupt
// or diverged checkpoint instead of computing with it.
func CheckFinite(name string, t *tensor.Dense) error {
	i := -1
	var x float64
	switch d := t.Data().(type) {
	case []gemm.BF16:
		if i = FirstNonFiniteBF16(d); i >= 0 {
			x = float64(d[i].Float32())
		}
	case []gemm.F16:
		if i = FirstNonFiniteF16(d); i >= 0 {
			x = float64(d[i].Float32())
		}
	case []float32:
		if i = FirstNonFinite(d); i >= 0 {
			x = float64(d[i])
		}
	case []float64:
		if i = FirstNonFinite(d); i >= 0 {
			x = d[i]
		}
	}
	if i >= 0 {
		return errors.Errorf("tensor %s holds %v at element %d of %d (a corrupt or diverged checkpoint)", name, x, i, t.Shape().TotalSize())
	}
	return nil
}

// Float64s copies a float32, float64, bfloat16 or float16 tensor's elements
// into a new slice.
func Float64s(t *tensor.Dense) []float64 {
	switch d := t.Data().(type) {
	case []gemm.BF16:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v.Float32())
		}
		return out
	case []gemm.F16:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v.Float32())
		}
		return out
	case []float64:
		return append([]float64(nil), d...)
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	}
	return nil
}

// Elements is the number of elements of a tensor of the given shape: the
// product of its dimensions, or an error when a dimension is negative or
// the product overflows an int (shapes computed from absurd settings).
func Elements(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, errors.Errorf("shape %v has a negative dimension", shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, errors.Errorf("shape %v has more than %d elements", shape, math.MaxInt)
		}
		n *= d
	}
	return n, nil
}
