package llama_test

import (
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"gorgonia.org/tensor"
)

// A model whose frozen weights are kept in bfloat16 and a LoRA adapter
// trained in float32 on top: load a Hugging Face folder with LoadHFWith
// (a BF16 checkpoint stays bfloat16 by default; Weights: lilyop.BFloat16
// also halves a float32 one), or convert a store already in memory with
// Store.ConvertFrozen. Graphs built afterwards (Build, NewGenerator) read
// the bfloat16 weights as they are.
func ExampleLoadHFWith() {
	dir, err := os.MkdirTemp("", "llama-bf16")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// A small random float32 model saved as a Hugging Face folder.
	c := llama.Config{Dim: 64, HiddenDim: 128, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 256,
		MaxSeqLen: 32, NormEps: 1e-5, RopeTheta: 10000, Rope: llama.Halves}
	s, err := llama.NewStore(c, tensor.Float32, 1)
	if err != nil {
		log.Fatal(err)
	}
	if err := llama.SaveHF(filepath.Join(dir, "model"), c, s); err != nil {
		log.Fatal(err)
	}

	// Load it with the matrices in bfloat16, norms and adapters in float32.
	c, s, err = llama.LoadHFWith(filepath.Join(dir, "model"), llama.HFOptions{Weights: lilyop.BFloat16})
	if err != nil {
		log.Fatal(err)
	}
	// (For a store built otherwise, e.g. from llama2.c:
	// s.ConvertFrozen(lilyop.BFloat16, layers.Matrices).)
	lora, err := layers.NewLoRA(layers.LoRAConfig{R: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj"}})
	if err != nil {
		log.Fatal(err)
	}
	if err := layers.Attach(s, lora, c.Sites(), rand.New(rand.NewPCG(1, 2))); err != nil {
		log.Fatal(err)
	}
	emb, _ := s.Get(llama.EmbedName)
	norm, _ := s.Get(llama.FinalNormName)
	a, _ := s.Get(s.Trainable()[0].Name)
	fmt.Println("embedding:", emb.Value.Dtype() == lilyop.BFloat16, "norm:", norm.Value.Dtype(), "adapter:", a.Value.Dtype())
	_, bytes := s.Bytes()
	_, count := s.Count()
	fmt.Printf("%d parameters in %d bytes\n", count, bytes)

	gen, err := llama.NewGenerator(c, s, lora)
	if err != nil {
		log.Fatal(err)
	}
	defer gen.Close()
	g, err := gen.GenerateTokens([]int{1, 2, 3}, llama.SampleOptions{Steps: 8})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(g.Tokens), "tokens")
	// Output:
	// embedding: true norm: float32 adapter: float32
	// 108608 parameters in 221440 bytes
	// 9 tokens
}
