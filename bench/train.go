package bench

import (
	"math/rand/v2"
	"time"

	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// NewBaseStore returns a float32 store holding a freshly initialised
// encoder of cfg (frozen) and a two-label classifier (trainable), to which
// adapters are attached.
func NewBaseStore(cfg roberta.Config) (*layers.Store, error) {
	s, err := layers.NewStore(tensor.Float32)
	if err != nil {
		return nil, err
	}
	if err := roberta.InitStore(s, cfg, 1); err != nil {
		return nil, err
	}
	s.Freeze()
	if err := roberta.AddClassifier(s, cfg, 2, 1); err != nil {
		return nil, err
	}
	return s, nil
}

// AttachMethod attaches m's adapter to s over cfg's sites, unless it is
// attached already (its first parameter exists), and returns the adapter.
func AttachMethod(s *layers.Store, cfg roberta.Config, m Method) (layers.Adapter, error) {
	ad, err := m.Adapter()
	if err != nil {
		return nil, err
	}
	specs, err := ad.Layout(cfg.Sites())
	if err != nil {
		return nil, err
	}
	if _, ok := s.Get(specs[0].Name); ok {
		return ad, nil
	}
	return ad, layers.Attach(s, ad, cfg.Sites(), rand.New(rand.NewPCG(5, 5)))
}

// StepConfig describes a training step of a RoBERTa model.
type StepConfig struct {
	// Config is the model (cfg.NumHiddenLayers layers).
	Config roberta.Config
	// Store holds the model's parameters (NewBaseStore); the adapter is
	// attached to it if needed, so that several steps can share one store.
	Store *layers.Store
	// Method is the adapter; nil means none (only the head, if any, trains).
	Method *Method
	// Batch and Seq are the input shape.
	Batch, Seq int
	// Classifier: the loss is the cross-entropy of the classification head
	// (a GLUE step). Otherwise it is Probe over the last hidden state, and
	// the embedding LayerNorm's weight is made trainable so that the first
	// layer, like every other layer of a stack, carries the gradient to its
	// input.
	Classifier bool
	// Eval builds an evaluation graph (no dropout); by default the graph is
	// a training graph with the model's dropout, refilled every step.
	Eval bool
	// NoOptimizer skips the AdamW step after the backward pass.
	NoOptimizer bool
	// Reduce, if set, is called on every step with the learnables'
	// gradients after the backward pass and before the AdamW step: a
	// data-parallel allreduce (dataparallel.Reducer.MeanGradients).
	Reduce func([]G.ValueGrad) error
	// NoRecycling switches off the output recycling that Graph.Machine
	// enables (every op output freshly allocated on every run, as before it
	// existed).
	NoRecycling bool
}

// TrainStep is one RoBERTa training step: refill the dropout masks, run
// the graph compiled by layers.Graph.Machine (loss and learnable gradients
// only), reduce the gradients if StepConfig.Reduce asks, then AdamW on the
// learnables.
type TrainStep struct {
	// BuildTime is the time Build took, CompileTime the time Graph.Machine
	// took (differentiation and compilation).
	BuildTime, CompileTime time.Duration
	// Nodes is the number of nodes of the graph.
	Nodes int
	// Tokens is Batch·Seq.
	Tokens int

	g      *layers.Graph
	vm     G.VM
	groups []*train.Group
	reduce func([]G.ValueGrad) error
	learn  G.Nodes
	rng    *rand.Rand
	loss   *G.Node
	eval   bool
	step   int
}

// NewTrainStep builds and compiles the step's graph.
func NewTrainStep(c StepConfig) (*TrainStep, error) {
	if c.Store == nil {
		return nil, errors.New("bench.NewTrainStep: no store")
	}
	var ad layers.Adapter = layers.None{}
	if c.Method != nil {
		var err error
		if ad, err = AttachMethod(c.Store, c.Config, *c.Method); err != nil {
			return nil, err
		}
	}
	if !c.Classifier {
		p, ok := c.Store.Get("roberta.embeddings.LayerNorm.weight")
		if !ok {
			return nil, errors.New("bench: the store has no embedding LayerNorm")
		}
		p.Trainable = true
	}
	t0 := time.Now()
	g := c.Store.NewGraph(!c.Eval)
	m, err := roberta.Build(g, c.Config, ad, c.Batch, c.Seq, roberta.Options{Classifier: c.Classifier})
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(11, 11))
	ids := make([]int, c.Batch*c.Seq)
	for i := range ids {
		ids[i] = 3 + rng.IntN(c.Config.VocabSize-3)
	}
	if err := m.SetInputs(ids, nil, nil); err != nil {
		return nil, err
	}
	var loss *G.Node
	if c.Classifier {
		labels := layers.IDs(g, "labels", c.Batch)
		lab := labels.Value().Data().([]int)
		for i := range lab {
			lab[i] = rng.IntN(2)
		}
		loss, err = lilyop.CrossEntropy(m.Logits, labels)
	} else {
		probe := randomInput(g.G, tensor.Float32, "bench.probe", rng, c.Batch, c.Seq, c.Config.HiddenSize)
		loss, err = Probe(probe, m.Hidden)
	}
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	vm, err := g.Machine(loss)
	if err != nil {
		return nil, err
	}
	if c.NoRecycling {
		opkit.DisableReuse(g.G)
	}
	s := &TrainStep{BuildTime: t1.Sub(t0), CompileTime: time.Since(t1), Nodes: len(g.G.AllNodes()), Tokens: c.Batch * c.Seq,
		g: g, vm: vm, rng: rng, loss: loss, eval: c.Eval, reduce: c.Reduce, learn: g.Learnables()}
	if !c.NoOptimizer {
		g := train.NewGroup("trainable", nil, 1e-4, 0)
		g.Nodes = s.learn
		s.groups = []*train.Group{g}
	}
	return s, nil
}

// Step runs one training step.
func (s *TrainStep) Step() error {
	if !s.eval {
		if err := s.g.RefillDropout(s.rng); err != nil {
			return err
		}
	}
	s.vm.Reset()
	if err := s.vm.RunAll(); err != nil {
		return err
	}
	s.step++
	if s.reduce != nil {
		if err := s.reduce(G.NodesToValueGrads(s.learn)); err != nil {
			return errors.Wrap(err, "bench: reducing the gradients")
		}
	}
	for _, gr := range s.groups {
		if err := gr.Opt.Step(G.NodesToValueGrads(gr.Nodes)); err != nil {
			return err
		}
	}
	return nil
}

// Loss returns the last step's loss.
func (s *TrainStep) Loss() float64 {
	switch v := s.loss.Value().Data().(type) {
	case float32:
		return float64(v)
	case float64:
		return v
	}
	return 0
}

// Close releases the machine.
func (s *TrainStep) Close() error { return s.vm.Close() }
