package main

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"gorgonia.org/tensor"
)

func TestSmooth(t *testing.T) {
	v := []float64{4, 2, 6, 8, 1, 3}
	got := smooth(v, 3)
	for i := range v {
		lo := max(0, i-2)
		s := 0.0
		for _, x := range v[lo : i+1] {
			s += x
		}
		if want := s / float64(i+1-lo); math.Abs(got[i]-want) > 1e-12 {
			t.Errorf("smooth[%d] = %v, want %v", i, got[i], want)
		}
	}
}

// The MLM head's bias starts at the add-one-smoothed log unigram
// probabilities of the ordinary tokens.
func TestUnigramBias(t *testing.T) {
	tok := testTokenizer(t)
	mk, err := newMasker(tok)
	if err != nil {
		t.Fatal(err)
	}
	v := tok.VocabSize()
	s, _ := layers.NewStore(tensor.Float64)
	if _, err := s.New(layers.ParamSpec{Name: lmBiasName, Shape: tensor.Shape{v}}, true, nil); err != nil {
		t.Fatal(err)
	}
	seqs := [][]int{{0, 10, 11, 10, 2, 1}, {0, 10, 12, 2, 1, 1}}
	if err := unigramBias(s, seqs, mk); err != nil {
		t.Fatal(err)
	}
	p, _ := s.Get(lmBiasName)
	b := p.Value.Data().([]float64)
	// 5 ordinary tokens: id 10 three times, 11 and 12 once.
	denom := 5.0 + float64(v)
	for id, want := range map[int]float64{10: 4 / denom, 11: 2 / denom, 12: 2 / denom, 13: 1 / denom, 0: 1 / denom} {
		if got := math.Exp(b[id]); math.Abs(got-want) > 1e-12 {
			t.Errorf("p(%d) = %v, want %v", id, got, want)
		}
	}
	sum := 0.0
	for _, x := range b {
		sum += math.Exp(x)
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("the bias is not a log distribution: Σexp = %v", sum)
	}
}

// The training losses are the mean cross-entropy of the logits
// (classification) and the mean squared error of the output (STS-B),
// recomputed here from an evaluation graph's logits (float64, no dropout,
// so both graphs compute the same logits), and their gradients with
// respect to the head match central differences. The regression loss is
// composed of Gorgonia's Sub, Square and Mean, whose backward pass reuses
// the logits' memory: predictions are read from evaluation graphs only.
func TestLossesMatchHandComputation(t *testing.T) {
	glueDir, model := fixture(t)
	for _, labels := range []int{2, 1} {
		ck, err := roberta.Load(model, roberta.LoadOptions{Dtype: tensor.Float64})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := bytebpe.Load(model)
		if err != nil {
			t.Fatal(err)
		}
		zero := 0.0
		ck.Config.HiddenDropoutProb, ck.Config.AttentionProbsDropoutProb, ck.Config.ClassifierDropout = 0, 0, &zero
		task, _ := glue.Lookup("sst2")
		dev, err := glue.Load(glueDir, "sst2", "dev")
		if err != nil {
			t.Fatal(err)
		}
		exs, err := encodeExamples(tok, task, dev[:6], 16)
		if err != nil {
			t.Fatal(err)
		}
		if labels == 1 {
			for i := range exs {
				exs[i].gold = 0.7 * float64(i)
			}
		}
		sm, err := newSeqModel(ck, layers.None{}, labels, 1, 6, 16)
		if err != nil {
			t.Fatal(err)
		}
		defer sm.close()
		idx := []int{0, 1, 2, 3, 4, 5}
		ids, mask, tl := padBatch(exs, idx, sm.pad, 16)
		eg, err := sm.graph(false, len(idx), tl)
		if err != nil {
			t.Fatal(err)
		}
		if err := eg.m.SetInputs(ids, mask, nil); err != nil {
			t.Fatal(err)
		}
		if err := eg.vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		logits := layers.Float64s(eg.m.Logits.Value().(*tensor.Dense))
		want := 0.0
		for r, i := range idx {
			if labels == 1 {
				d := logits[r] - exs[i].gold
				want += d * d
				continue
			}
			row := logits[r*2 : r*2+2]
			m := math.Max(row[0], row[1])
			lse := m + math.Log(math.Exp(row[0]-m)+math.Exp(row[1]-m))
			want += lse - row[int(exs[i].gold)]
		}
		want /= float64(len(idx))

		// One forward and backward pass through the training path.
		loss, nodes, n, err := sm.forward(exs, idx, 16, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(loss-want) > 1e-12*math.Max(1, want) {
			t.Errorf("%d labels: loss %v, by hand %v", labels, loss, want)
		}
		if n != sum(lengths(exs)) {
			t.Errorf("%d real tokens counted, want %d", n, sum(lengths(exs)))
		}

		// Gradients of the head against central differences of the loss.
		tg, err := sm.graph(true, len(idx), tl)
		if err != nil {
			t.Fatal(err)
		}
		run := func() float64 {
			tg.vm.Reset()
			if err := tg.vm.RunAll(); err != nil {
				t.Fatal(err)
			}
			return scalar(tg.loss.Value())
		}
		// Gorgonia adds every run's gradients to the last ones (train.Run's
		// accumulator takes and zeroes them): zero them, so that this run
		// alone fills them.
		for _, nd := range nodes {
			gv, err := nd.Grad()
			if err != nil {
				t.Fatal(err)
			}
			setFloats(gv.(*tensor.Dense), func(int) float64 { return 0 })
		}
		run()
		ana := map[string][]float64{}
		for _, nd := range tg.g.Learnables() {
			gv, err := nd.Grad()
			if err != nil {
				t.Fatal(err)
			}
			ana[nd.Name()] = layers.Float64s(gv.(*tensor.Dense))
		}
		for name, g := range ana {
			p, _ := sm.store.Get(name)
			vals := p.Value.Data().([]float64)
			for _, j := range []int{0, len(vals) / 2, len(vals) - 1} {
				o := vals[j]
				vals[j] = o + 1e-6
				fp := run()
				vals[j] = o - 1e-6
				fm := run()
				vals[j] = o
				if num := (fp - fm) / 2e-6; math.Abs(num-g[j]) > 1e-6*math.Max(1, math.Abs(num)) {
					t.Errorf("%d labels: d loss/d %s[%d] = %v, numerically %v", labels, name, j, g[j], num)
				}
			}
		}
	}
}
