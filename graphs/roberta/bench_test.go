package roberta

import (
	"math/rand/v2"
	"testing"

	"github.com/lilygo/lily/layers"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// BenchmarkBuildRobertaBase measures building and compiling a roberta-base
// training graph (batch 8, length 128, Lily on query and value, classifier,
// gradients): the fixed cost per shape bucket. The store (about 500 MB of
// float32) is made once.
func BenchmarkBuildRobertaBase(b *testing.B) {
	c := BaseConfig()
	s, err := layers.NewStore(tensor.Float32)
	if err != nil {
		b.Fatal(err)
	}
	if err := InitStore(s, c, 1); err != nil {
		b.Fatal(err)
	}
	s.Freeze()
	lily, err := layers.NewLily(layers.LilyConfig{R: 32, StrideA: 6, NumB: 2, Scaling: 0.01, TargetModules: []string{"query", "value"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := layers.Attach(s, lily, c.Sites(), rand.New(rand.NewPCG(1, 1))); err != nil {
		b.Fatal(err)
	}
	if err := AddClassifier(s, c, 2, 1); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g := s.NewGraph(true)
		m, err := Build(g, c, lily, 8, 128, Options{Classifier: true})
		if err != nil {
			b.Fatal(err)
		}
		loss, err := G.Sum(m.Logits)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := G.Grad(loss, g.Learnables()...); err != nil {
			b.Fatal(err)
		}
		vm := G.NewTapeMachine(g.G, G.BindDualValues(g.Learnables()...))
		b.ReportMetric(float64(len(g.G.AllNodes())), "nodes")
		vm.Close()
	}
}
