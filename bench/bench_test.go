package bench

import (
	"github.com/lilygo/lily/graphs/roberta"
	"testing"
	"time"
)

// pair runs b.N interleaved rounds of A and B after one warm-up step each
// and reports the median ratio A/B (as unit) and both median times. Run
// with -benchtime=Nx (N rounds); every round costs one step of each.
func pair(b *testing.B, a, c Stepper, unit string) {
	b.Helper()
	if err := a.Step(); err != nil {
		b.Fatalf("%+v", err)
	}
	if err := c.Step(); err != nil {
		b.Fatalf("%+v", err)
	}
	b.ResetTimer()
	t, err := Interleave(a, c, 0, b.N)
	if err != nil {
		b.Fatalf("%+v", err)
	}
	b.ReportMetric(t.Ratio(), unit)
	b.ReportMetric(float64(t.MedA())/float64(time.Millisecond), "ms-A")
	b.ReportMetric(float64(t.MedB())/float64(time.Millisecond), "ms-B")
}

func adapterStep(b *testing.B, c AdapterConfig) *AdapterStep {
	b.Helper()
	s, err := NewAdapterStep(c)
	if err != nil {
		b.Fatalf("%+v", err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkAdaptersLilyVsLoRA: the 24 query/value adapters of roberta-base
// on 8×128 tokens, forward and backward; A is Lily (198,144 parameters), B
// LoRA r 5 (184,320).
func BenchmarkAdaptersLilyVsLoRA(b *testing.B) {
	pair(b, adapterStep(b, AdapterConfig{Method: PaperLily()}), adapterStep(b, AdapterConfig{Method: MatchedLoRA()}), "lily/lora")
}

// BenchmarkAdaptersLilyVsLoRA32: as above against LoRA of Lily's rank.
func BenchmarkAdaptersLilyVsLoRA32(b *testing.B) {
	pair(b, adapterStep(b, AdapterConfig{Method: PaperLily()}), adapterStep(b, AdapterConfig{Method: LoRARank(32)}), "lily/lora32")
}

// BenchmarkFusedVsComposed: A is Lily from the fused lilyop ops, B the same
// math from stock Gorgonia ops.
func BenchmarkFusedVsComposed(b *testing.B) {
	pair(b, adapterStep(b, AdapterConfig{Method: PaperLily()}), adapterStep(b, AdapterConfig{Method: PaperLily(), Composed: true}), "fused/composed")
}

// BenchmarkAdapterStep times one configuration alone (for profiling with
// -cpuprofile; the comparisons above are the measurements).
func BenchmarkAdapterStep(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  AdapterConfig
	}{
		{"lily", AdapterConfig{Method: PaperLily()}},
		{"lora5", AdapterConfig{Method: MatchedLoRA()}},
		{"composed", AdapterConfig{Method: PaperLily(), Composed: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := adapterStep(b, c.cfg)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Step(); err != nil {
					b.Fatalf("%+v", err)
				}
			}
		})
	}
}

// layerConfig is one roberta-base encoder layer with a small vocabulary.
func layerConfig() roberta.Config {
	c := roberta.BaseConfig()
	c.NumHiddenLayers = 1
	c.VocabSize = 1000
	return c
}

func trainStep(b *testing.B, c StepConfig) *TrainStep {
	b.Helper()
	s, err := NewTrainStep(c)
	if err != nil {
		b.Fatalf("%+v", err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkLayerStep times one encoder layer's training step alone (for
// profiling).
func BenchmarkLayerStep(b *testing.B) {
	cfg := layerConfig()
	st, err := NewBaseStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	lily := PaperLily()
	s := trainStep(b, StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 8, Seq: 128})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Step(); err != nil {
			b.Fatalf("%+v", err)
		}
	}
}

// BenchmarkTrainStep times a whole roberta-base training step with Lily
// alone (for profiling; the store is built once, outside the timing).
func BenchmarkTrainStep(b *testing.B) {
	cfg := roberta.BaseConfig()
	st, err := NewBaseStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	lily := PaperLily()
	s := trainStep(b, StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 8, Seq: 128, Classifier: true})
	if err := s.Step(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Step(); err != nil {
			b.Fatalf("%+v", err)
		}
	}
}

// BenchmarkLayerVsGEMMs: A is one roberta-base encoder layer's training
// step, B the raw GEMMs of its matrix products (LayerGEMMs) through the
// same BLAS.
func BenchmarkLayerVsGEMMs(b *testing.B) {
	cfg := layerConfig()
	st, err := NewBaseStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	lily := PaperLily()
	s := trainStep(b, StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 8, Seq: 128})
	g := NewGEMMRunner(LayerGEMMs(LayerShape{Batch: 8, Seq: 128, Hidden: cfg.HiddenSize, Heads: cfg.NumAttentionHeads,
		FFN: cfg.IntermediateSize, R: lily.R, NumB: lily.NumB, InputGrad: true}))
	pair(b, s, g, "layer/gemms")
}

// BenchmarkStepLilyVsLoRA: a whole roberta-base training step (classifier,
// cross-entropy, dropout, AdamW; 8×128 tokens), A with Lily, B with LoRA
// r 5.
func BenchmarkStepLilyVsLoRA(b *testing.B) {
	cfg := roberta.BaseConfig()
	st, err := NewBaseStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	lily, lora := PaperLily(), MatchedLoRA()
	pair(b, trainStep(b, StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 8, Seq: 128, Classifier: true}),
		trainStep(b, StepConfig{Config: cfg, Store: st, Method: &lora, Batch: 8, Seq: 128, Classifier: true}), "lily/lora")
}

// BenchmarkBuildGraph: building and compiling the 12-layer roberta-base
// training graph (Build, then Graph.Machine), per iteration; the store is
// made once.
func BenchmarkBuildGraph(b *testing.B) {
	cfg := roberta.BaseConfig()
	st, err := NewBaseStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	lily := PaperLily()
	if _, err := AttachMethod(st, cfg, lily); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := NewTrainStep(StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 8, Seq: 128, Classifier: true, NoOptimizer: true})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(s.Nodes), "nodes")
		s.Close()
	}
}

// BenchmarkGLUEStep: tokens/s of a GLUE-style step (roberta-base +
// classifier + Lily, 16×64 tokens, dropout, AdamW), with bytes allocated
// per step.
func BenchmarkGLUEStep(b *testing.B) {
	cfg := roberta.BaseConfig()
	st, err := NewBaseStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	lily := PaperLily()
	s := trainStep(b, StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 16, Seq: 64, Classifier: true})
	for i := 0; i < 2; i++ {
		if err := s.Step(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Step(); err != nil {
			b.Fatalf("%+v", err)
		}
	}
	b.ReportMetric(float64(s.Tokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
}
