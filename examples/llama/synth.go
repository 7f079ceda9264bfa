package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/tensorfile"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/pkg/errors"
)

// kindSynth is the record kind of a synthesized checkpoint's folder.
const kindSynth = "llama synth"

// defaultMaxShard is transformers' default max_shard_size, "5GB".
const defaultMaxShard = 5_000_000_000

// Hugging Face checkpoint file names that synth writes and loadBase reads.
const (
	hfConfigFile          = "config.json"
	hfGenerationFile      = "generation_config.json"
	hfTokenizerFile       = "tokenizer.json"
	hfTokenizerConfigFile = "tokenizer_config.json"
	hfSingleWeights       = "model.safetensors"
	hfWeightsIndex        = "model.safetensors.index.json"
)

// Tokenizer families of the presets: how the special tokens are laid out.
const (
	familyLlama2 = "llama2" // <unk>, <s>, </s> at ids 0, 1, 2 (LLaMA 2, TinyLlama)
	familyLlama3 = "llama3" // <|begin_of_text|>, <|end_of_text|> first of the last 256 ids (LLaMA 3)
)

// synthPreset is one architecture synth can write: the values of the
// published config.json.
type synthPreset struct {
	cfg    llama.Config
	family string
	// headDim writes head_dim, as newer configs do.
	headDim bool
	source  string // the Hugging Face repository the values come from
}

// synthPresets are the -config choices. The three real ones copy their
// repositories' config.json; tiny is for tests.
var synthPresets = map[string]synthPreset{
	"tiny": {cfg: llama.Config{Dim: 64, HiddenDim: 172, NLayers: 2, NHeads: 8, NKVHeads: 4, VocabSize: 512,
		MaxSeqLen: 256, NormEps: 1e-5, RopeTheta: 10000}, family: familyLlama2, source: "none (a test model)"},
	"tinyllama-1.1b": {cfg: llama.Config{Dim: 2048, HiddenDim: 5632, NLayers: 22, NHeads: 32, NKVHeads: 4, VocabSize: 32000,
		MaxSeqLen: 2048, NormEps: 1e-5, RopeTheta: 10000}, family: familyLlama2, source: "TinyLlama/TinyLlama-1.1B-Chat-v1.0"},
	"llama3.2-1b": {cfg: llama.Config{Dim: 2048, HiddenDim: 8192, NLayers: 16, NHeads: 32, NKVHeads: 8, VocabSize: 128256,
		MaxSeqLen: 131072, NormEps: 1e-5, RopeTheta: 500000, TiedEmbeddings: true,
		RopeScaling: llama.RopeScaling{Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}},
		family: familyLlama3, headDim: true, source: "meta-llama/Llama-3.2-1B"},
	"llama3-8b": {cfg: llama.Config{Dim: 4096, HiddenDim: 14336, NLayers: 32, NHeads: 32, NKVHeads: 8, VocabSize: 128256,
		MaxSeqLen: 8192, NormEps: 1e-5, RopeTheta: 500000}, family: familyLlama3, source: "meta-llama/Meta-Llama-3-8B"},
}

// presetNames lists the -config choices in order.
func presetNames() []string {
	return []string{"tiny", "tinyllama-1.1b", "llama3.2-1b", "llama3-8b"}
}

// synthConfig holds the synth flags.
type synthConfig struct {
	Config       string
	Dtype        string
	Vocab        int
	Seed         uint64
	Out          string
	Overwrite    bool
	MaxShardSize int64
}

// synthUsage explains the subcommand; -h prints it above the flags.
const synthUsage = `llama synth: write a Hugging Face LLaMA checkpoint directory with a real
architecture and seeded random weights, to test the Hugging Face path end to
end where no real checkpoint can be downloaded.

  llama synth -config llama3-8b -dtype bf16 -out runs/llama3-8b-synth      # 16 GB on disk
  llama synth -config tiny -out runs/tiny && llama generate -checkpoint runs/tiny

The folder holds what transformers' save_pretrained writes: config.json (the
published values of -config), generation_config.json, model.safetensors, or
above -max_shard_size the shards model-0000k-of-0000n.safetensors with
model.safetensors.index.json, tensors named model.layers.N.self_attn.q_proj.weight
and so on ([out, in], lm_head.weight unless the embeddings are tied), and a
small byte-level BPE tokenizer (tokenizer.json, tokenizer_config.json) trained
on a built-in text, its ids padded with reserved tokens up to the vocabulary.
Weights are normal(0, 0.02) (norms one), drawn per tensor from -seed and the
tensor's name, and written tensor by tensor, so memory stays small whatever
the size. A real checkpoint of the same layout loads the same way.

Flags:
`

// parseSynth parses the synth flags.
func parseSynth(args []string, usageOut io.Writer) (synthConfig, error) {
	c := synthConfig{Dtype: "bf16", Seed: 1, MaxShardSize: defaultMaxShard}
	fs := flag.NewFlagSet("llama synth", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.StringVar(&c.Config, "config", "", "architecture: "+strings.Join(presetNames(), ", ")+" (required)")
	fs.StringVar(&c.Dtype, "dtype", c.Dtype, "weight type in the files: bf16 (as the real checkpoints ship) or f32")
	fs.IntVar(&c.Vocab, "vocab", 0, "vocabulary size instead of the architecture's (0: the real one)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed of the weights")
	fs.StringVar(&c.Out, "out", "", "checkpoint folder to write (required)")
	fs.BoolVar(&c.Overwrite, "overwrite", false, "replace -out when it holds a finished run or another kind of run")
	shard := fs.String("max_shard_size", "5GB", "largest weights file before sharding, as transformers' max_shard_size (5GB = 5·10⁹ bytes; KB, MB, GB, KiB, MiB, GiB or bytes)")
	fs.Usage = func() {
		fmt.Fprint(usageOut, synthUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var err error
	if c.MaxShardSize, err = parseByteSize(*shard); err != nil {
		return c, errors.Wrap(err, "-max_shard_size")
	}
	p, ok := synthPresets[c.Config]
	switch {
	case fs.NArg() > 0:
		return c, errors.Errorf("synth: unexpected argument %q (flags start with -)", fs.Arg(0))
	case c.Config == "":
		return c, errors.Errorf("synth: -config is required: one of %s", strings.Join(presetNames(), ", "))
	case !ok:
		return c, errors.Errorf("synth: -config %q is unknown: use one of %s", c.Config, strings.Join(presetNames(), ", "))
	case c.Dtype != "bf16" && c.Dtype != "f32":
		return c, errors.Errorf("synth: -dtype %q: use bf16 or f32", c.Dtype)
	case c.Out == "":
		return c, errors.New("synth: -out is required: the checkpoint folder to write")
	case c.Vocab < 0:
		return c, errors.Errorf("synth: -vocab %d must not be negative", c.Vocab)
	case c.Vocab > 0 && c.Vocab < minVocab(p.family):
		return c, errors.Errorf("synth: -vocab %d is too small for a %s-style tokenizer: it needs at least %d ids (256 bytes and the special tokens)", c.Vocab, p.family, minVocab(p.family))
	case c.MaxShardSize <= 0:
		return c, errors.Errorf("synth: -max_shard_size %s must be positive", *shard)
	}
	return c, nil
}

// parseByteSize reads "5GB", "500MB", "64KiB" or "12345" (bytes); the
// decimal units are powers of ten, as in transformers.
func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || !(x > 0) || x*u.mult > math.MaxInt64/2 {
				return 0, errors.Errorf("%q is not a size such as 5GB, 200MB or 1048576", s)
			}
			return int64(x * u.mult), nil
		}
	}
	return 0, errors.Errorf("%q is not a size", s)
}

// minVocab is the smallest vocabulary a family's tokenizer fits in.
func minVocab(family string) int {
	if family == familyLlama3 {
		return 256 + 256
	}
	return 3 + 256
}

// hfTensor is one tensor of a Hugging Face LLaMA checkpoint in torch
// layout, in the order of the model's state dict.
type hfTensor struct {
	name  string
	shape []int
	norm  bool // an RMSNorm weight: initialised to one
}

// hfTensors lists a model's tensors as LlamaForCausalLM's state dict orders
// them: the embedding; per layer self_attn q, k, v, o, mlp gate, up, down,
// input_layernorm, post_attention_layernorm; the final norm; lm_head unless
// tied.
func hfTensors(c llama.Config) []hfTensor {
	out := []hfTensor{{name: llama.EmbedName, shape: []int{c.VocabSize, c.Dim}}}
	sites := c.Sites()
	for l := 0; l < c.NLayers; l++ {
		for _, s := range sites[7*l : 7*l+7] {
			out = append(out, hfTensor{name: s.Weight, shape: []int{s.DOut, s.DIn}})
		}
		p := fmt.Sprintf("model.layers.%d.", l)
		out = append(out, hfTensor{name: p + "input_layernorm.weight", shape: []int{c.Dim}, norm: true},
			hfTensor{name: p + "post_attention_layernorm.weight", shape: []int{c.Dim}, norm: true})
	}
	out = append(out, hfTensor{name: llama.FinalNormName, shape: []int{c.Dim}, norm: true})
	if !c.TiedEmbeddings {
		out = append(out, hfTensor{name: llama.HeadName, shape: []int{c.VocabSize, c.Dim}})
	}
	return out
}

// elements is the number of values of a shape.
func elements(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return n
}

// shards splits the tensors into files of at most maxBytes each, in order,
// as transformers does: a tensor that does not fit in the current shard
// starts a new one, and a tensor larger than maxBytes gets a shard of its
// own.
func shards(ts []hfTensor, bytesPer int, maxBytes int64) [][]hfTensor {
	var out [][]hfTensor
	var cur []hfTensor
	var size int64
	for _, t := range ts {
		b := elements(t.shape) * int64(bytesPer)
		if len(cur) > 0 && size+b > maxBytes {
			out, cur, size = append(out, cur), nil, 0
		}
		cur, size = append(cur, t), size+b
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// shardName is transformers' name of shard i (from 0) of n.
func shardName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n)
}

// synthConfigJSON is the config.json of a preset (with the vocabulary and
// dtype synth writes): the keys transformers writes for LlamaForCausalLM.
func synthConfigJSON(p synthPreset, c llama.Config, dtype string, bos, eos int) ([]byte, error) {
	base, err := c.HFConfigJSON()
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(base, &m); err != nil {
		return nil, errors.Wrap(err, "synth: config.json")
	}
	m["bos_token_id"], m["eos_token_id"] = bos, eos
	m["torch_dtype"] = map[string]string{"bf16": "bfloat16", "f32": "float32"}[dtype]
	m["initializer_range"] = 0.02
	m["attention_dropout"] = 0.0
	m["pretraining_tp"] = 1
	m["use_cache"] = true
	m["transformers_version"] = "4.45.0"
	if p.headDim {
		m["head_dim"] = c.HeadDim()
	}
	return marshalIndent(m)
}

// marshalIndent is JSON with two-space indentation and a final newline, no
// HTML escaping (as Python's json writes it).
func marshalIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	err := enc.Encode(v)
	return b.Bytes(), errors.Wrap(err, "encoding JSON")
}

// synthCorpus is the text the synthesized tokenizer is trained on: plain
// English, so that common words become single tokens.
const synthCorpus = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.
One day, she saw a big red ball under a tree. She ran to the ball and picked it up. It was the best day of her life.
The model reads the text one token at a time and predicts the next one. A token is a piece of a word, a whole word, or a single byte.
The weights of this model are random, so the text it writes means nothing; the files have the shapes and the names of the real model.
We train, evaluate and export adapters on it to test that every command reads a Hugging Face directory the same way.
The quick brown fox jumps over the lazy dog. The five boxing wizards jump quickly. Pack my box with five dozen liquor jugs.
In the morning the sun was warm and the sky was blue. The children went to the river, and they played there until the evening.
There is a time for every thing, and a place for every one of them: the house, the garden, the school and the little shop on the hill.`

// synthMaxMerges bounds the merges learned from synthCorpus.
const synthMaxMerges = 1000

// synthTokenizer trains the byte-level BPE of a synthesized checkpoint and
// returns its tokenizer.json and tokenizer_config.json and the BOS and EOS
// ids. Ids up to vocab that BPE does not use hold reserved tokens, so that
// every id the model can produce decodes. LLaMA 3's family gets LLaMA 3's
// layout: its pre-tokenizer (Split by bytebpe.Llama3Pattern, then
// ByteLevel), ignore_merges, and the last 256 ids as added special tokens
// (<|begin_of_text|>, <|end_of_text|>, reserved ones).
func synthTokenizer(family string, vocab, maxLen int) (tokJSON, tokCfg []byte, bos, eos int, err error) {
	var specials []string
	nSpecial := 256
	bosTok, eosTok, unk := "<|begin_of_text|>", "<|end_of_text|>", ""
	if family == familyLlama2 {
		specials, nSpecial = []string{"<unk>", "<s>", "</s>"}, 3
		bosTok, eosTok, unk = "<s>", "</s>", "<unk>"
	}
	merges := min(synthMaxMerges, vocab-nSpecial-256)
	var tok *bytebpe.Tokenizer
	if merges > 0 {
		tok, err = bytebpe.TrainStrings(strings.Split(synthCorpus, "\n"), bytebpe.TrainOptions{NumMerges: merges, SpecialTokens: specials, MinFrequency: 2})
	} else {
		tok, err = bytebpe.TrainStrings(nil, bytebpe.TrainOptions{VocabSize: len(specials) + 256, SpecialTokens: specials})
	}
	if err != nil {
		return nil, nil, 0, 0, errors.Wrap(err, "synth: training the tokenizer")
	}
	names := make([]string, vocab)
	for id := 0; id < tok.VocabSize(); id++ {
		names[id], _ = tok.IDToToken(id)
	}
	if family == familyLlama2 {
		bos, eos = 1, 2
	} else {
		bos, eos = vocab-256, vocab-255
		names[bos], names[eos] = bosTok, eosTok
	}
	reserved := 0
	for id := range names {
		if names[id] == "" {
			names[id] = fmt.Sprintf("<|reserved_special_token_%d|>", reserved)
			reserved++
		}
	}
	// model.vocab in id order, written by hand to keep the order. LLaMA 3
	// keeps its last 256 ids, the special tokens, out of model.vocab (they
	// are added_tokens only).
	inVocab := len(names)
	if family == familyLlama3 {
		inVocab = vocab - 256
	}
	var v bytes.Buffer
	v.WriteByte('{')
	for id, n := range names[:inVocab] {
		if id > 0 {
			v.WriteByte(',')
		}
		k, _ := json.Marshal(n)
		fmt.Fprintf(&v, "%s:%d", k, id)
	}
	v.WriteByte('}')
	type added struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var addedTokens []added
	for id, n := range names {
		if tok.IsSpecial(id) || (family == familyLlama3 && id >= vocab-256) {
			addedTokens = append(addedTokens, added{ID: id, Content: n, Special: true})
		}
	}
	specialTok := func(name string, id int) map[string]any {
		return map[string]any{"id": name, "ids": []int{id}, "tokens": []string{name}}
	}
	seq := func(id string) map[string]any {
		return map[string]any{"Sequence": map[string]any{"id": id, "type_id": 0}}
	}
	bosPiece := map[string]any{"SpecialToken": map[string]any{"id": bosTok, "type_id": 0}}
	// GPT-2's pattern for LLaMA 2's family (whose real tokenizer is
	// SentencePiece's, which this one does not imitate); LLaMA 3's own
	// Split and ignore_merges for LLaMA 3's.
	var pre any = map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	if family == familyLlama3 {
		pre = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": bytebpe.Llama3Pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}}}
	}
	var unkToken any
	if unk != "" {
		unkToken = unk
	}
	doc := map[string]any{
		"version":       "1.0",
		"truncation":    nil,
		"padding":       nil,
		"added_tokens":  addedTokens,
		"normalizer":    nil,
		"pre_tokenizer": pre,
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single":         []any{bosPiece, seq("A")},
			"pair":           []any{bosPiece, seq("A"), bosPiece, seq("B")},
			"special_tokens": map[string]any{bosTok: specialTok(bosTok, bos)}},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": unkToken, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": family == familyLlama3,
			"vocab": json.RawMessage(v.Bytes()), "merges": tok.Merges()},
	}
	if tokJSON, err = marshalIndent(doc); err != nil {
		return nil, nil, 0, 0, errors.Wrap(err, "synth: tokenizer.json")
	}
	cfg := map[string]any{"add_bos_token": true, "add_eos_token": false, "bos_token": bosTok, "eos_token": eosTok,
		"clean_up_tokenization_spaces": false, "model_max_length": maxLen, "tokenizer_class": "PreTrainedTokenizerFast"}
	if unk != "" {
		cfg["unk_token"] = unk
	}
	if tokCfg, err = marshalIndent(cfg); err != nil {
		return nil, nil, 0, 0, errors.Wrap(err, "synth: tokenizer_config.json")
	}
	return tokJSON, tokCfg, bos, eos, nil
}

// tensorSeed derives a tensor's random stream from the seed and its name,
// so that its values do not depend on the sharding or the file order.
func tensorSeed(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// synthChunk is how many values fillTensor draws and writes at a time.
const synthChunk = 1 << 16

// fillTensor writes t's values in the dtype's little-endian bytes: ones for
// a norm, else normal(0, 0.02) from the tensor's own stream. bfloat16 is
// rounded to nearest even (gemm.ToBF16).
func fillTensor(t hfTensor, dtype string, seed uint64, w io.Writer) error {
	rng := rand.New(rand.NewPCG(seed, tensorSeed(t.name)))
	size := 4
	if dtype == "bf16" {
		size = 2
	}
	buf := make([]byte, synthChunk*size)
	for left := elements(t.shape); left > 0; {
		n := int(min(left, synthChunk))
		for i := 0; i < n; i++ {
			x := float32(1)
			if !t.norm {
				x = float32(0.02 * rng.NormFloat64())
			}
			if size == 2 {
				binary.LittleEndian.PutUint16(buf[2*i:], uint16(gemm.ToBF16(x)))
			} else {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
			}
		}
		if _, err := w.Write(buf[:n*size]); err != nil {
			return err
		}
		left -= int64(n)
	}
	return nil
}

// freeDisk returns the bytes free to this user in the file system that
// holds path (or its nearest existing parent), and false where unknown.
func freeDisk(path string) (float64, bool) {
	dir, err := filepath.Abs(path)
	if err != nil {
		return 0, false
	}
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err == nil {
			return float64(st.Bavail) * float64(st.Bsize), true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return 0, false
		}
		dir = parent
	}
}

// synthResult is what synth reports.
type synthResult struct {
	Params  int64
	Bytes   int64 // of the weights files
	Shards  int   // 1: model.safetensors
	Seconds float64
}

// runSynth writes the checkpoint folder c describes.
func runSynth(c synthConfig, w io.Writer) (*synthResult, error) {
	p := synthPresets[c.Config]
	cfg := p.cfg
	if c.Vocab > 0 {
		cfg.VocabSize = c.Vocab
	}
	folder := outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindSynth, Overwrite: c.Overwrite}
	if err := folder.Check(); err != nil {
		return nil, errors.Wrap(err, "synth")
	}
	bytesPer := 2
	dtype := tensorfile.BF16
	if c.Dtype == "f32" {
		bytesPer, dtype = 4, tensorfile.F32
	}
	ts := hfTensors(cfg)
	res := &synthResult{}
	for _, t := range ts {
		res.Params += elements(t.shape)
	}
	res.Bytes = res.Params * int64(bytesPer)
	if free, ok := freeDisk(c.Out); ok && float64(res.Bytes) > free {
		return nil, errors.Errorf("synth: %s needs about %s of disk for its weights, the file system of %s has %s free; free space or choose a smaller -config",
			c.Config, memcheck.Format(float64(res.Bytes)), c.Out, memcheck.Format(free))
	}
	tokJSON, tokCfg, bos, eos, err := synthTokenizer(p.family, cfg.VocabSize, cfg.MaxSeqLen)
	if err != nil {
		return nil, err
	}
	cfgJSON, err := synthConfigJSON(p, cfg, c.Dtype, bos, eos)
	if err != nil {
		return nil, err
	}
	genJSON, err := marshalIndent(map[string]any{"bos_token_id": bos, "eos_token_id": eos, "transformers_version": "4.45.0"})
	if err != nil {
		return nil, err
	}
	groups := shards(ts, bytesPer, c.MaxShardSize)
	res.Shards = len(groups)
	fmt.Fprintf(w, "synth %s (%s): dim %d, hidden %d, %d layers, %d heads (%d kv), vocab %d, %d parameters, %s of %s weights in %d file(s)\n",
		c.Config, p.source, cfg.Dim, cfg.HiddenDim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.VocabSize, res.Params,
		memcheck.Format(float64(res.Bytes)), c.Dtype, len(groups))
	start := time.Now()
	err = folder.Write(true, func(dir string) error {
		weightMap := map[string]string{}
		for i, g := range groups {
			name := hfSingleWeights
			if len(groups) > 1 {
				name = shardName(i, len(groups))
			}
			specs := make([]tensorfile.Spec, len(g))
			byName := map[string]hfTensor{}
			for j, t := range g {
				specs[j] = tensorfile.Spec{Name: t.name, Dtype: dtype, Shape: t.shape}
				byName[t.name] = t
				weightMap[t.name] = name
			}
			err := tensorfile.WriteStream(filepath.Join(dir, name), specs, map[string]string{"format": "pt"}, func(s tensorfile.Spec, w io.Writer) error {
				return fillTensor(byName[s.Name], c.Dtype, c.Seed, w)
			})
			if err != nil {
				return errors.Wrap(err, "synth")
			}
		}
		if len(groups) > 1 {
			index, err := marshalIndent(map[string]any{"metadata": map[string]any{"total_size": res.Bytes}, "weight_map": weightMap})
			if err != nil {
				return err
			}
			if err := atomicfile.WriteBytes(filepath.Join(dir, hfWeightsIndex), index); err != nil {
				return err
			}
		}
		for name, data := range map[string][]byte{hfConfigFile: cfgJSON, hfGenerationFile: genJSON, hfTokenizerFile: tokJSON, hfTokenizerConfigFile: tokCfg} {
			if err := atomicfile.WriteBytes(filepath.Join(dir, name), data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	files := []string{hfSingleWeights}
	if len(groups) > 1 {
		files = []string{fmt.Sprintf("%s … %s", shardName(0, len(groups)), shardName(len(groups)-1, len(groups))), hfWeightsIndex}
	}
	files = append(files, hfConfigFile, hfGenerationFile, hfTokenizerFile, hfTokenizerConfigFile)
	fmt.Fprintf(w, "wrote %s to %s in %.1f s (%.0f MB/s)\n", strings.Join(files, ", "), c.Out, res.Seconds, float64(res.Bytes)/1e6/max(res.Seconds, 1e-9))
	return res, nil
}

// synthCmd runs the synth subcommand.
func synthCmd(args []string, stdout, stderr io.Writer) error {
	c, err := parseSynth(args, stderr)
	if err != nil {
		return err
	}
	_, err = runSynth(c, stdout)
	return err
}
