package llama

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/tokenizers/llama2c"
	"gorgonia.org/tensor"
)

// llama2cGreedy256 is what llama2.c's run.c prints for
// `run stories260K.bin -z tok512.bin -t 0 -n 256`.
const llama2cGreedy256 = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n" +
	"Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\n" +
	"Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n" +
	"Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" Her mom said, \"Don't worry, Lily. We can help you."

func loadStories(t testing.TB, dt tensor.Dtype) (Config, *layers.Store, *llama2c.Tokenizer) {
	t.Helper()
	c, s, err := LoadLlama2C(sharedData(t, "llama2c/stories260K.bin"), dt)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := llama2c.Load(sharedData(t, "llama2c/tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return c, s, tok
}

func TestGreedyStories260K(t *testing.T) {
	c, s, tok := loadStories(t, tensor.Float32)
	res, err := Generate(c, s, nil, tok, "", SampleOptions{Steps: 256})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	const want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
	if !strings.HasPrefix(res.Text, want) {
		t.Fatalf("greedy text:\n%s\nwant it to begin with:\n%s", res.Text, want)
	}
	if res.Text != llama2cGreedy256 {
		t.Errorf("greedy text differs from llama2.c's:\n%s", res.Text)
	}
	if len(res.Tokens) != 257 || res.Prompt != 1 || res.Tokens[0] != llama2c.BOS {
		t.Errorf("%d tokens, prompt %d", len(res.Tokens), res.Prompt)
	}
	t.Logf("%d tokens at %.0f tokens/s", len(res.Tokens)-res.Prompt, res.TokensPerSecond())

	// The full (uncached) graph over the same tokens gives llama2.c's logits.
	b := buildModel(t, c, s, nil, 1, 256, false)
	defer b.vm.Close()
	if err := b.m.SetBatch([][]int{res.Tokens[:256]}); err != nil {
		t.Fatal(err)
	}
	b.run(t)
	for _, ref := range []struct {
		pos, next int
		first     []float64
		best      float64
	}{ // printed by run.c's forward() for the greedy sequence
		{0, 403, []float64{-6.22291136, 8.4043417, -6.22373724, -6.22254181, -6.22195101, -6.22287512}, 17.0235157},
		{10, 315, []float64{-9.07258129, -5.24530554, -9.07158852, -9.07197952, -9.07157993, -9.07209492}, 15.6052961},
		{100, 415, []float64{-9.98989391, 1.92773569, -9.9902277, -9.98979855, -9.98918438, -9.9900322}, 19.0804958},
		{255, 426, []float64{-15.6322975, -1.96090436, -15.6329365, -15.632823, -15.6334, -15.634161}, 13.4633598},
	} {
		l := b.logits(0, ref.pos)
		closeTo(t, "logits vs llama2.c", l[:6], ref.first, 2e-5)
		closeTo(t, "best logit vs llama2.c", l[ref.next:ref.next+1], []float64{ref.best}, 2e-5)
		if res.Tokens[ref.pos+1] != ref.next {
			t.Errorf("position %d: generated %d, llama2.c %d", ref.pos, res.Tokens[ref.pos+1], ref.next)
		}
	}
}

func TestCachedDecodingMatchesFullForward(t *testing.T) {
	c := tinyConfig(false, Halves)
	s := randomStore(t, c, tensor.Float64, 21)
	// Token routing mixes per token, so it is the same with or without a
	// cache; batch routing would mix over different token sets.
	lily, err := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 1, NumB: 3, Scaling: 0.5, TargetModules: []string{"q_proj", "k_proj", "down_proj"}, NonZeroB: true, Routing: lilyop.Token})
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.Attach(s, lily, c.Sites(), rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	for _, a := range []layers.Adapter{nil, lily} {
		seq := randomTokens(rand.New(rand.NewPCG(3, 3)), c.VocabSize, 9)[0]
		full := buildModel(t, c, s, a, 1, len(seq), false)
		if err := full.m.SetBatch([][]int{seq}); err != nil {
			t.Fatal(err)
		}
		full.run(t)
		gen, err := NewGenerator(c, s, a)
		if err != nil {
			t.Fatal(err)
		}
		// Prompt of 4, then one token at a time; then again from a shorter
		// prompt, which rewinds the cache.
		for _, prompt := range []int{4, 2} {
			got, err := gen.forward(seq[:prompt], 0)
			if err != nil {
				t.Fatalf("%+v", err)
			}
			closeTo(t, "prompt logits", got, full.logits(0, prompt-1), 1e-12)
			for p := prompt; p < len(seq); p++ {
				if got, err = gen.forward(seq[p:p+1], p); err != nil {
					t.Fatal(err)
				}
				closeTo(t, "cached logits", got, full.logits(0, p), 1e-12)
			}
		}
		res, err := gen.GenerateTokens(seq[:3], SampleOptions{Steps: 8})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Tokens) != 9 {
			t.Fatalf("%d tokens for 8 steps", len(res.Tokens))
		}
		check := buildModel(t, c, s, a, 1, 8, false)
		if err := check.m.SetBatch([][]int{res.Tokens[:8]}); err != nil {
			t.Fatal(err)
		}
		check.run(t)
		for p := 2; p < 8; p++ {
			l := check.logits(0, p)
			if best := argmax(l); best != res.Tokens[p+1] {
				t.Errorf("position %d: greedy %d, argmax of the full forward %d", p, res.Tokens[p+1], best)
			}
		}
		gen.Close()
		full.vm.Close()
		check.vm.Close()
	}
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func TestSample(t *testing.T) {
	logits := []float64{1, 3, 0.5, 3, -2}
	rng := rand.New(rand.NewPCG(1, 2))
	if got := sample(logits, 0, 0, rng); got != 1 {
		t.Errorf("greedy picked %d, want the first maximum 1", got)
	}
	for i := 0; i < 100; i++ {
		if got := sample(logits, 1, 0.3, rng); got != 1 && got != 3 {
			t.Fatalf("top-p 0.3 drew %d outside the nucleus {1, 3}", got)
		}
	}
	// Frequencies follow softmax(logits/T).
	const n, temp = 40000, 1.5
	counts := make([]float64, len(logits))
	for i := 0; i < n; i++ {
		counts[sample(logits, temp, 0, rng)]++
	}
	var z float64
	for _, l := range logits {
		z += math.Exp(l / temp)
	}
	for i, l := range logits {
		p := math.Exp(l/temp) / z
		if math.Abs(counts[i]/n-p) > 4*math.Sqrt(p*(1-p)/n)+1e-3 {
			t.Errorf("token %d drawn %.4f of the time, want %.4f", i, counts[i]/n, p)
		}
	}
	// Top-p 0.9 renormalises over the nucleus {1, 3, 0}: token 2 and 4 never.
	counts = make([]float64, len(logits))
	for i := 0; i < n; i++ {
		counts[sample(logits, 1, 0.9, rng)]++
	}
	if counts[2] != 0 || counts[4] != 0 || counts[0] == 0 {
		t.Errorf("top-p 0.9 counts %v", counts)
	}
}

func TestGenerateSampling(t *testing.T) {
	c, s, tok := loadStories(t, tensor.Float32)
	gen, err := NewGenerator(c, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	opt := SampleOptions{Steps: 40, Temperature: 0.8, TopP: 0.9, Seed: 7}
	a, err := gen.Generate(tok, "Lily had a cat", opt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := gen.Generate(tok, "Lily had a cat", opt)
	if err != nil {
		t.Fatal(err)
	}
	if a.Text != b.Text || !strings.HasPrefix(a.Text, "Lily had a cat") {
		t.Errorf("same seed, different text:\n%q\n%q", a.Text, b.Text)
	}
	opt.Seed = 8
	d, err := gen.Generate(tok, "Lily had a cat", opt)
	if err != nil {
		t.Fatal(err)
	}
	if d.Text == a.Text {
		t.Errorf("seeds 7 and 8 gave the same text %q", a.Text)
	}
	for _, bad := range []SampleOptions{{Temperature: -1}, {Temperature: math.NaN()}} {
		if _, err := gen.Generate(tok, "x", bad); err == nil {
			t.Errorf("options %+v must be rejected", bad)
		}
	}
	if _, err := gen.GenerateTokens([]int{1, 512}, SampleOptions{}); err == nil {
		t.Error("a prompt token outside the vocabulary must be rejected")
	}
	if _, err := gen.GenerateTokens(nil, SampleOptions{}); err == nil {
		t.Error("an empty prompt must be rejected")
	}
	small := tinyConfig(true, Interleaved)
	if _, err := Generate(small, randomStore(t, small, tensor.Float32, 1), nil, tok, "x", SampleOptions{}); err == nil {
		t.Error("a tokenizer of another vocabulary size must be rejected")
	}
}

func BenchmarkGreedyStories260K(b *testing.B) {
	c, s, tok := loadStories(b, tensor.Float32)
	gen, err := NewGenerator(c, s, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer gen.Close()
	var tokens int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := gen.Generate(tok, "", SampleOptions{Steps: 256})
		if err != nil {
			b.Fatal(err)
		}
		tokens += len(res.Tokens) - res.Prompt
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}
