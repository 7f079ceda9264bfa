package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/lilygo/lily/internal/searchcmd"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/tensorfile"
	"github.com/lilygo/lily/tokenizers/llama2c"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// runCmd runs the llama command with args and returns its stdout.
func runCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("llama %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// synthTiny writes the tiny preset to a new folder with extra flags.
func synthTiny(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny")
	runCmd(t, append([]string{"synth", "-config", "tiny", "-out", dir}, extra...)...)
	return dir
}

// TestPresetsHaveTheRealSizes: the presets' parameter counts are those of
// the published models, and the tied Llama 3.2 has no lm_head.
func TestPresetsHaveTheRealSizes(t *testing.T) {
	for name, want := range map[string]int64{
		"llama3-8b":      8_030_261_248,
		"llama3.2-1b":    1_235_814_400,
		"tinyllama-1.1b": 1_100_048_384,
	} {
		var n int64
		head := false
		for _, ts := range hfTensors(synthPresets[name].cfg) {
			n += elements(ts.shape)
			head = head || ts.name == llama.HeadName
		}
		if n != want {
			t.Errorf("%s: %d parameters, want %d", name, n, want)
		}
		p := synthPresets[name]
		if head == p.cfg.TiedEmbeddings {
			t.Errorf("%s: lm_head.weight present %t with tied embeddings %t", name, head, p.cfg.TiedEmbeddings)
		}
		js, err := synthConfigJSON(p, p.cfg, "bf16", 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := llama.ParseHFConfig(js); err != nil || back != p.cfg {
			t.Errorf("%s: config.json reads back as %+v, %v", name, back, err)
		}
	}
}

// TestSynthLayout: the folder holds what transformers writes, with Hugging
// Face's tensor names and [out, in] shapes, and our loader reads it back.
func TestSynthLayout(t *testing.T) {
	dir := synthTiny(t, "-dtype", "f32")
	for _, f := range []string{hfConfigFile, hfGenerationFile, hfTokenizerFile, hfTokenizerConfigFile, hfSingleWeights} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	f, err := tensorfile.Open(filepath.Join(dir, hfSingleWeights))
	if err != nil {
		t.Fatal(err)
	}
	want := synthPresets["tiny"].cfg
	names := f.Names()
	if len(names) != 2*9+3 {
		t.Errorf("%d tensors: %v", len(names), names)
	}
	for name, shape := range map[string][]int{
		"model.embed_tokens.weight":                      {want.VocabSize, want.Dim},
		"model.layers.1.self_attn.q_proj.weight":         {want.Dim, want.Dim},
		"model.layers.1.self_attn.k_proj.weight":         {want.KVDim(), want.Dim},
		"model.layers.0.mlp.down_proj.weight":            {want.Dim, want.HiddenDim},
		"model.layers.0.mlp.gate_proj.weight":            {want.HiddenDim, want.Dim},
		"model.layers.0.input_layernorm.weight":          {want.Dim},
		"model.layers.1.post_attention_layernorm.weight": {want.Dim},
		"model.norm.weight":                              {want.Dim},
		"lm_head.weight":                                 {want.VocabSize, want.Dim},
	} {
		got, ok := f.Shape(name)
		if !ok || !tensor.Shape(got).Eq(tensor.Shape(shape)) {
			t.Errorf("%s: shape %v (present %t), want %v", name, got, ok, shape)
		}
	}
	if dt, _ := f.Dtype("model.norm.weight"); dt != tensorfile.F32 {
		t.Errorf("dtype %s", dt)
	}
	cfg, s, err := llama.LoadHF(dir, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if cfg != want {
		t.Errorf("config %+v, want %+v", cfg, want)
	}
	norm, _ := s.Get("model.layers.0.input_layernorm.weight")
	q, _ := s.Get("model.layers.0.self_attn.q_proj.weight")
	if v := layers.Float64s(norm.Value); v[0] != 1 {
		t.Errorf("norm weight %v, want ones", v[0])
	}
	sum, sq := 0.0, 0.0
	v := layers.Float64s(q.Value)
	for _, x := range v {
		sum, sq = sum+x, sq+x*x
	}
	if std := math.Sqrt(sq / float64(len(v))); math.Abs(std-0.02) > 0.002 || math.Abs(sum/float64(len(v))) > 0.002 {
		t.Errorf("q_proj: mean %g, std %g, want normal(0, 0.02)", sum/float64(len(v)), std)
	}
	var raw map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, hfConfigFile))
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["torch_dtype"] != "float32" || raw["bos_token_id"] != 1.0 || raw["model_type"] != "llama" {
		t.Errorf("config.json: %v", raw)
	}
}

// loadAll loads a checkpoint folder and returns every weight by name.
func loadAll(t *testing.T, dir string) map[string][]float64 {
	t.Helper()
	_, s, err := llama.LoadHF(dir, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for _, p := range s.Params() {
		out[p.Name] = layers.Float64s(p.Value)
	}
	return out
}

// TestShardedEqualsSingleAndBF16Rounds: a sharded folder (index and
// model-0000k-of-0000n files) loads to the same weights as one file, and
// the bf16 folder holds the f32 weights rounded to nearest even.
func TestShardedEqualsSingleAndBF16Rounds(t *testing.T) {
	single := synthTiny(t, "-dtype", "f32")
	sharded := synthTiny(t, "-dtype", "f32", "-max_shard_size", "200KB")
	bf16 := synthTiny(t)
	if _, err := os.Stat(filepath.Join(sharded, hfSingleWeights)); err == nil {
		t.Fatal("the sharded folder has model.safetensors")
	}
	var index struct {
		Metadata  map[string]float64 `json:"metadata"`
		WeightMap map[string]string  `json:"weight_map"`
	}
	data, err := os.ReadFile(filepath.Join(sharded, hfWeightsIndex))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	shardSet := map[string]bool{}
	for _, s := range index.WeightMap {
		shardSet[s] = true
	}
	var names []string
	for s := range shardSet {
		names = append(names, s)
	}
	sort.Strings(names)
	if len(names) < 3 || names[0] != "model-00001-of-0000"+string(rune('0'+len(names)))+".safetensors" {
		t.Fatalf("shards %v", names)
	}
	if index.Metadata["total_size"] != 4*156480 {
		t.Errorf("total_size %v", index.Metadata["total_size"])
	}
	a, b, h := loadAll(t, single), loadAll(t, sharded), loadAll(t, bf16)
	if len(a) != len(b) || len(a) != len(h) {
		t.Fatalf("%d, %d and %d tensors", len(a), len(b), len(h))
	}
	for name, va := range a {
		vb, vh := b[name], h[name]
		for i := range va {
			if va[i] != vb[i] {
				t.Fatalf("%s[%d]: %v single, %v sharded", name, i, va[i], vb[i])
			}
			if r := float64(gemm.ToBF16(float32(va[i])).Float32()); vh[i] != r {
				t.Fatalf("%s[%d]: bf16 file holds %v, f32 %v rounds to %v", name, i, vh[i], va[i], r)
			}
		}
	}
}

// writeTexts writes small training and held-out text files.
func writeTexts(t *testing.T) (train, eval string) {
	t.Helper()
	tmp := t.TempDir()
	train, eval = filepath.Join(tmp, "train.txt"), filepath.Join(tmp, "eval.txt")
	var tr, ev []string
	words := strings.Fields("the little girl saw a big red ball in the park and she played with her dog")
	for i := 0; i < 40; i++ {
		line := strings.Join([]string{words[i%len(words)], words[(3*i+1)%len(words)], words[(5*i+2)%len(words)], words[(7*i+3)%len(words)]}, " ")
		if i < 32 {
			tr = append(tr, line)
		} else {
			ev = append(ev, line)
		}
	}
	if err := os.WriteFile(train, []byte(strings.Join(tr, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(eval, []byte(strings.Join(ev, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return train, eval
}

// TestHFEndToEnd: synth → generate → finetune → eval → export, and the
// exported folder is read by eval with the adapter's perplexity.
func TestHFEndToEnd(t *testing.T) {
	dir := synthTiny(t, "-dtype", "f32")
	tmp := t.TempDir()
	train, eval := writeTexts(t)
	gen := runCmd(t, "generate", "-checkpoint", dir, "-temperature", "0", "-steps", "12", "-prompt", "Once upon")
	if !strings.HasPrefix(gen, "Once upon") {
		t.Errorf("generate: %q", gen)
	}
	ft := filepath.Join(tmp, "ft")
	runCmd(t, "finetune", "-checkpoint", dir, "-train_file", train, "-eval_file", eval, "-adapter", "lora", "-max_steps", "4",
		"-batch_size", "8", "-eval_every", "0", "-lr", "0.02", "-out", ft)
	res := readResult(t, ft)
	if res.Best.Perplexity >= res.Base.Perplexity {
		t.Errorf("fine-tuning did not lower perplexity: %v → %v", res.Base.Perplexity, res.Best.Perplexity)
	}
	useArgs := []string{"-checkpoint", dir, "-eval_file", eval, "-batch_size", "8", "-adapter", filepath.Join(ft, adapterDir)}
	c, err := parseUse("eval", useArgs, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r, err := runUseEval(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.Adapted == nil || r.Adapted.Perplexity != res.Best.Perplexity {
		t.Errorf("eval: %+v, the run's best %v", r.Adapted, res.Best.Perplexity)
	}
	ex := filepath.Join(tmp, "export")
	out := runCmd(t, append([]string{"export", "-out", ex, "-train_file", train, "-steps", "16"}, useArgs...)...)
	if strings.Contains(out, "bfloat16") {
		t.Errorf("a float32 checkpoint exported in bfloat16: %s", out)
	}
	if !strings.Contains(out, "equals the adapter's") {
		t.Errorf("export: %s", out)
	}
	for _, f := range []string{hfConfigFile, hfTokenizerFile, hfTokenizerConfigFile, hfSingleWeights, hfGenerationFile} {
		if _, err := os.Stat(filepath.Join(ex, exportHF, f)); err != nil {
			t.Error(err)
		}
	}
	c, err = parseUse("eval", []string{"-checkpoint", filepath.Join(ex, exportHF), "-eval_file", eval, "-batch_size", "8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := runUseEval(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(merged.Base.Perplexity - r.Adapted.Perplexity); d > 1e-4*r.Adapted.Perplexity {
		t.Errorf("the exported model's perplexity %v, the adapter's %v", merged.Base.Perplexity, r.Adapted.Perplexity)
	}
}

// logits runs the model of b on ids and returns its logits.
func logits(t *testing.T, b *base, ids []int) []float32 {
	t.Helper()
	g := b.store.NewGraph(false)
	m, err := llama.Build(g, b.cfg, nil, 1, len(ids))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetBatch([][]int{ids}); err != nil {
		t.Fatal(err)
	}
	vm, err := g.Machine(nil, m.Logits)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), m.Logits.Value().(G.Value).Data().([]float32)...)
}

// TestLlama2cAndHFLogitsEqual converts stories260K into a Hugging Face
// folder (sharded weights, LLaMA 2's tokenizer.json) and checks that the
// command loads it to the same logits, bit for bit, and decodes the same
// greedy text with the folder's own tokenizer.
func TestLlama2cAndHFLogitsEqual(t *testing.T) {
	data := sharedData(t)
	ckpt, tokPath := filepath.Join(data, defaultCheckpoint), filepath.Join(data, defaultTokenizer)
	b, err := loadBase(ckpt, tokPath, "f32", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "stories260K-hf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgJSON, err := b.cfg.HFConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := saveHFStream(dir, b.cfg, b.store, "f32", cfgJSON, 100_000); err != nil { // sharded, as large checkpoints are
		t.Fatal(err)
	}
	// LLaMA 2's layout of tokenizer.json, as TinyLlama ships it.
	if err := b.tok.(*llama2c.Tokenizer).WriteHF(dir, b.cfg.MaxSeqLen); err != nil {
		t.Fatal(err)
	}
	h, err := loadBase(dir, tokenizerFor(dir, ""), "f32", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !h.hf || h.cfg != b.cfg {
		t.Fatalf("loaded as hf %t with %+v, want %+v", h.hf, h.cfg, b.cfg)
	}
	ids, err := b.tok.Encode("Once upon a time, there was a dog", true, false)
	if err != nil {
		t.Fatal(err)
	}
	lb, lh := logits(t, b, ids), logits(t, h, ids)
	for i := range lb {
		if lb[i] != lh[i] {
			t.Fatalf("logit %d: llama2.c %v, Hugging Face %v", i, lb[i], lh[i])
		}
	}
	// The llama2.c model as llama2.c lays it out (interleaved rotary pairs)
	// computes the same logits up to rounding.
	cfg, s, err := llama.LoadLlama2C(ckpt, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	li := logits(t, &base{cfg: cfg, store: s}, ids)
	for i := range li {
		if d := math.Abs(float64(li[i] - lh[i])); d > 1e-4 {
			t.Fatalf("logit %d: interleaved %v, Hugging Face %v", i, li[i], lh[i])
		}
	}
	gen := runCmd(t, "generate", "-checkpoint", dir, "-temperature", "0", "-steps", "40")
	if want := "Once upon a time, there was a little girl named Lily."; !strings.HasPrefix(gen, want) {
		t.Errorf("greedy text of the Hugging Face folder: %q", gen)
	}
}

// TestHFMemoryRefused: a Llama 3 8B folder is refused with the numbers on
// a 16 GiB machine, before any weight is read.
func TestHFMemoryRefused(t *testing.T) {
	dir := t.TempDir()
	p := synthPresets["llama3-8b"]
	cfgJSON, err := synthConfigJSON(p, p.cfg, "bf16", 128000, 128001)
	if err != nil {
		t.Fatal(err)
	}
	index := `{"metadata": {"total_size": 16060522496}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00004.safetensors"}}`
	for name, data := range map[string]string{hfConfigFile: string(cfgJSON), hfWeightsIndex: index, "model-00001-of-00004.safetensors": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	load, run, err := hfNeeds(dir, tensor.Float32, func(c llama.Config) memcheck.Need { return generateNeed(c, 256, 10) })
	if err != nil {
		t.Fatal(err)
	}
	const avail = 16 * memcheck.GiB
	err = load.Fits(avail)
	if err == nil || !strings.Contains(err.Error(), "needs about 31.9 GiB") || !strings.Contains(err.Error(), "16.0 GiB available") {
		t.Errorf("load: %v", err)
	}
	if run.Total() < weightBytes(p.cfg, tensor.Float32) || weightBytes(p.cfg, tensor.Float32) != 4*8_030_261_248 {
		t.Errorf("run needs %v", run.Total())
	}
	if run.Fits(64*memcheck.GiB) != nil {
		t.Errorf("generating 256 tokens with Llama 3 8B should fit in 64 GiB: %v", run.Fits(64*memcheck.GiB))
	}
	// In bfloat16 the weights take half, and loading adds no copy.
	load, _, err = hfNeeds(dir, lilyop.BFloat16, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := load.Fits(14 * memcheck.GiB); err == nil || !strings.Contains(err.Error(), "needs about 15.0 GiB") {
		t.Errorf("bf16 load: %v", err)
	}
	// float16 takes what bfloat16 does.
	load16, _, err := hfNeeds(dir, lilyop.Float16, nil)
	if err != nil {
		t.Fatal(err)
	}
	if load16.Total() != load.Total() || weightBytes(p.cfg, lilyop.Float16) != weightBytes(p.cfg, lilyop.BFloat16) {
		t.Errorf("f16 load needs %v, bf16 %v; weights %v", load16.Total(), load.Total(), weightBytes(p.cfg, lilyop.Float16))
	}
}

// TestSentencePieceTokenizer: LLaMA 2's style of tokenizer.json is read as
// the llama2.c tokenizer it was converted from, and another kind is
// refused with what to do instead.
func TestSentencePieceTokenizer(t *testing.T) {
	data := sharedData(t)
	tok, err := llama2c.Load(filepath.Join(data, defaultTokenizer))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := tok.WriteHF(dir, 512); err != nil {
		t.Fatal(err)
	}
	back, err := loadTokenizer(filepath.Join(dir, hfTokenizerFile), dir)
	if err != nil {
		t.Fatal(err)
	}
	text := "Once upon a time, there was a little girl named Lily."
	a, _ := tok.Encode(text, true, false)
	b, _ := back.Encode(text, true, false)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("tokenizer.json encodes %v, tok512.bin %v", b, a)
	}
	js, err := os.ReadFile(filepath.Join(dir, hfTokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(js), `"type": "BPE"`, `"type": "Unigram"`, 1)
	if err := os.WriteFile(filepath.Join(dir, hfTokenizerFile), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = loadTokenizer(filepath.Join(dir, hfTokenizerFile), dir)
	if err == nil || !strings.Contains(err.Error(), "SentencePiece-style") || !strings.Contains(err.Error(), "-tokenizer") {
		t.Errorf("got %v", err)
	}
}

// TestSynthFlagErrors: bad synth flags are refused before any work.
func TestSynthFlagErrors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-out", out}, "-config is required"},
		{[]string{"-config", "llama4", "-out", out}, "unknown"},
		{[]string{"-config", "tiny", "-out", out, "-dtype", "f16"}, "bf16 or f32"},
		{[]string{"-config", "tiny"}, "-out is required"},
		{[]string{"-config", "llama3-8b", "-vocab", "300", "-out", out}, "at least 512"},
		{[]string{"-config", "tiny", "-out", out, "-max_shard_size", "big"}, "-max_shard_size"},
	} {
		_, err := parseSynth(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
	dir := synthTiny(t)
	var errOut bytes.Buffer
	if err := run(context.Background(), []string{"synth", "-config", "tiny", "-out", dir}, io.Discard, &errOut); err == nil || !strings.Contains(err.Error(), "-overwrite") {
		t.Errorf("a second synth into a finished folder: %v", err)
	}
	runCmd(t, "synth", "-config", "tiny", "-out", dir, "-overwrite", "-seed", "2")
	if n, err := parseByteSize("5GB"); err != nil || n != 5_000_000_000 {
		t.Errorf("5GB: %d, %v", n, err)
	}
	if n, err := parseByteSize("2MiB"); err != nil || n != 2<<20 {
		t.Errorf("2MiB: %d, %v", n, err)
	}
}

// TestSynthLlama3Tokenizer: a LLaMA 3 family tokenizer (shrunk with -vocab)
// has LLaMA 3's layout and ids: BOS and EOS first of the last 256, its
// pre-tokenizer splits digits in threes, and it reads back through the
// command's loader.
func TestSynthLlama3Tokenizer(t *testing.T) {
	tokJSON, _, bos, eos, err := synthTokenizer(familyLlama3, 2048, 8192)
	if err != nil {
		t.Fatal(err)
	}
	if bos != 2048-256 || eos != bos+1 {
		t.Errorf("bos %d, eos %d", bos, eos)
	}
	var doc struct {
		Pre struct {
			Type string `json:"type"`
		} `json:"pre_tokenizer"`
		Added []struct {
			ID int `json:"id"`
		} `json:"added_tokens"`
		Model struct {
			Vocab        map[string]int `json:"vocab"`
			IgnoreMerges bool           `json:"ignore_merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(tokJSON, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Pre.Type != "Sequence" || !doc.Model.IgnoreMerges || len(doc.Added) != 256 || len(doc.Model.Vocab) != 2048-256 {
		t.Errorf("pre_tokenizer %s, ignore_merges %t, %d added, %d in model.vocab", doc.Pre.Type, doc.Model.IgnoreMerges, len(doc.Added), len(doc.Model.Vocab))
	}
	dir := t.TempDir()
	cfg := `{"bos_token_id": 1792, "eos_token_id": [1793, 1800]}`
	if err := os.WriteFile(filepath.Join(dir, hfConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, hfTokenizerFile), tokJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := loadTokenizer(filepath.Join(dir, hfTokenizerFile), dir)
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != 1792 || tok.EOS() != 1793 || tok.VocabSize() != 2048 {
		t.Errorf("BOS %d, EOS %d, vocabulary %d", tok.BOS(), tok.EOS(), tok.VocabSize())
	}
	ids, err := tok.Encode("The children played 12345 times.", true, true)
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != 1792 || ids[len(ids)-1] != 1793 {
		t.Errorf("ids %v", ids)
	}
	var text strings.Builder
	for i := 1; i < len(ids)-1; i++ {
		s, err := tok.Decode(ids[i-1], ids[i])
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(s)
	}
	if text.String() != "The children played 12345 times." {
		t.Errorf("decoded %q", text.String())
	}
	if s, _ := tok.Decode(0, 1800); s != "<|reserved_special_token_1|>" && !strings.HasPrefix(s, "<|reserved_special_token_") {
		t.Errorf("id 1800 decodes to %q", s)
	}
}

// TestSweepAndSearchTakeHFDirs: sweep and search run on a Hugging Face
// directory.
func TestSweepAndSearchTakeHFDirs(t *testing.T) {
	dir := synthTiny(t)
	train, eval := writeTexts(t)
	common := []string{"-checkpoint", dir, "-train_file", train, "-eval_file", eval, "-batch_size", "8", "-max_len", "16"}
	out := t.TempDir()
	runCmd(t, append([]string{"sweep", "-seeds", "1", "-out", out, "-max_steps", "2", "-run", "lora: -adapter lora -lora_r 2"}, common...)...)
	if _, err := os.Stat(filepath.Join(out, sweepJSON)); err != nil {
		t.Error(err)
	}
	out = t.TempDir()
	runCmd(t, append([]string{"search", "-out", out, "-lora_budget", "1", "-tolerance", "0.2", "-max_r", "4", "-max_num_B", "2",
		"-rungs", "1,2", "-keep", "0.5", "-seeds", "1"}, common...)...)
	if _, err := os.Stat(filepath.Join(out, searchcmd.JSONFile)); err != nil {
		t.Error(err)
	}
}

// TestExportDtype: a bf16 checkpoint exports in bf16 by default, with a
// note, and exactly in float32 with -dtype f32 (config.json saying so).
func TestExportDtype(t *testing.T) {
	dir := synthTiny(t)
	train, eval := writeTexts(t)
	tmp := t.TempDir()
	ft := filepath.Join(tmp, "ft")
	runCmd(t, "finetune", "-checkpoint", dir, "-train_file", train, "-eval_file", eval, "-adapter", "lora", "-max_steps", "2",
		"-batch_size", "8", "-eval_every", "0", "-out", ft)
	args := []string{"export", "-checkpoint", dir, "-adapter", filepath.Join(ft, adapterDir), "-train_file", train, "-eval_file", eval, "-steps", "4"}
	bf := filepath.Join(tmp, "bf16")
	if out := runCmd(t, append(args, "-out", bf)...); !strings.Contains(out, "rounded to bfloat16") {
		t.Errorf("no note of the rounding: %s", out)
	}
	f32 := filepath.Join(tmp, "f32")
	if out := runCmd(t, append(args, "-out", f32, "-dtype", "f32")...); strings.Contains(out, "bfloat16") {
		t.Errorf("-dtype f32: %s", out)
	}
	for dir, want := range map[string]string{bf: "bfloat16", f32: "float32"} {
		hf := filepath.Join(dir, exportHF)
		if got := torchDtype(hf); got != want {
			t.Errorf("%s: torch_dtype %q, want %q", hf, got, want)
		}
		f, err := tensorfile.Open(filepath.Join(hf, hfSingleWeights))
		if err != nil {
			t.Fatal(err)
		}
		if dt, _ := f.Dtype(llama.EmbedName); dt != map[string]string{"bfloat16": tensorfile.BF16, "float32": tensorfile.F32}[want] {
			t.Errorf("%s: the embedding is %s", hf, dt)
		}
	}
	if _, err := parseUse("export", []string{"-adapter", "a", "-out", "b", "-dtype", "f16"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-dtype") {
		t.Errorf("-dtype f16: %v", err)
	}
}

// TestBaseDtypeBF16: with -base_dtype bf16 a bfloat16 checkpoint decodes
// and fine-tunes exactly as in float32 (its values are the same; the
// products widen them exactly), and full fine-tuning is refused.
func TestBaseDtypeBF16(t *testing.T) {
	dir := synthTiny(t)
	train, eval := writeTexts(t)
	gen := []string{"generate", "-checkpoint", dir, "-temperature", "0", "-steps", "16", "-prompt", "The little"}
	if a, b := runCmd(t, gen...), runCmd(t, append(gen, "-base_dtype", "bf16")...); a != b {
		t.Errorf("greedy text in float32 %q, in bfloat16 %q", a, b)
	}
	ft := []string{"finetune", "-checkpoint", dir, "-train_file", train, "-eval_file", eval, "-adapter", "lora", "-max_steps", "3",
		"-batch_size", "8", "-eval_every", "0"}
	f32, bf16 := filepath.Join(t.TempDir(), "f32"), filepath.Join(t.TempDir(), "bf16")
	runCmd(t, append(ft, "-out", f32)...)
	runCmd(t, append(ft, "-out", bf16, "-base_dtype", "bf16")...)
	a, b := readResult(t, f32), readResult(t, bf16)
	if d := math.Abs(a.Best.Perplexity - b.Best.Perplexity); d > 1e-5*a.Best.Perplexity {
		t.Errorf("best perplexity %v in float32, %v in bfloat16", a.Best.Perplexity, b.Best.Perplexity)
	}
	if _, err := parseFinetune([]string{"-adapter", "full", "-base_dtype", "bf16"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-base_dtype f32") {
		t.Errorf("full fine-tuning in bfloat16: %v", err)
	}
}

// TestBaseDtypeF16: -base_dtype f16 keeps the weight matrices of a
// checkpoint in float16 (rounded from its bfloat16) and the norms in
// float32, decodes with them, and is refused with -adapter full; an
// unknown dtype is refused naming the three.
func TestBaseDtypeF16(t *testing.T) {
	dir := synthTiny(t)
	b, err := loadBase(dir, filepath.Join(dir, "tokenizer.json"), "f16", nil)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	for _, p := range b.store.Params() {
		want := lilyop.Float16
		if p.Value.Dims() == 1 {
			want = tensor.Float32
		}
		if p.Value.Dtype() != want {
			t.Fatalf("%s kept in %v, want %v", p.Name, p.Value.Dtype(), want)
		}
	}
	if out := runCmd(t, "generate", "-checkpoint", dir, "-temperature", "0", "-steps", "8", "-prompt", "The little", "-base_dtype", "f16"); out == "" {
		t.Error("no text generated in float16")
	}
	if _, err := parseFinetune([]string{"-adapter", "full", "-base_dtype", "f16"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-base_dtype f32") {
		t.Errorf("full fine-tuning in float16: %v", err)
	}
	if _, err := parseFinetune([]string{"-base_dtype", "f8"}, io.Discard); err == nil || !strings.Contains(err.Error(), "f16") {
		t.Errorf("-base_dtype f8: %v", err)
	}
}
