package main

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/lilygo/lily/tokenizers/llama2c"
	"github.com/pkg/errors"
)

// isHFDir reports whether path is a Hugging Face checkpoint directory: a
// directory holding config.json (or a swap of one that a killed write left
// half-way).
func isHFDir(path string) bool {
	path = atomicfile.Resolve(path)
	st, err := os.Stat(path)
	if err != nil || !st.IsDir() {
		return false
	}
	_, err = os.Stat(filepath.Join(path, hfConfigFile))
	return err == nil
}

// tokenizerFor resolves -tokenizer: the flag's value when given, else the
// checkpoint's tokenizer.json for a Hugging Face directory, else the shared
// llama2.c tokenizer.
func tokenizerFor(checkpoint, tokenizer string) string {
	switch {
	case tokenizer != "":
		return tokenizer
	case isHFDir(checkpoint):
		return filepath.Join(checkpoint, hfTokenizerFile)
	}
	return sharedPath(defaultTokenizer)
}

// hfTokenizer is a Hugging Face byte-level BPE tokenizer (tokenizer.json)
// with the model's BOS and EOS ids, as llama.Tokenizer.
type hfTokenizer struct {
	t        *bytebpe.Tokenizer
	bos, eos int
}

// Encode returns text's byte-level BPE ids, BOS first and EOS last on
// request.
func (h *hfTokenizer) Encode(text string, bos, eos bool) ([]int, error) {
	var ids []int
	if bos {
		ids = append(ids, h.bos)
	}
	ids = append(ids, h.t.Encode(text)...)
	if eos {
		ids = append(ids, h.eos)
	}
	return ids, nil
}

// Decode returns the bytes of token id (a special token's own text); the
// bytes of one character may be split over several tokens.
func (h *hfTokenizer) Decode(prev, id int) (string, error) {
	if _, ok := h.t.IDToToken(id); !ok {
		return "", errors.Errorf("token %d is not in the tokenizer's vocabulary of %d", id, h.t.VocabSize())
	}
	return h.t.Decode([]int{id}, false)
}

// VocabSize is one more than the largest id.
func (h *hfTokenizer) VocabSize() int { return h.t.VocabSize() }

// BOS is the begin-of-sequence id.
func (h *hfTokenizer) BOS() int { return h.bos }

// EOS is the end-of-sequence id.
func (h *hfTokenizer) EOS() int { return h.eos }

// loadTokenizer reads -tokenizer: a Hugging Face tokenizer.json or a
// llama2.c tokenizer file. A tokenizer.json is byte-level BPE (GPT-2's or
// LLaMA 3's pre-tokenizer; BOS and EOS ids from checkpoint's config.json,
// else from tokenizer_config.json beside it) or SentencePiece-style BPE
// with byte_fallback (LLaMA 2's, TinyLlama's: read as a llama2.c
// tokenizer, BOS 1 and EOS 2).
func loadTokenizer(path, checkpoint string) (llama.Tokenizer, error) {
	if !strings.HasSuffix(path, ".json") {
		tok, err := llama2c.Load(path)
		return tok, err
	}
	var cfg struct {
		BOS json.RawMessage `json:"bos_token_id"`
		EOS json.RawMessage `json:"eos_token_id"`
	}
	bos, eos := -1, -1
	if data, err := os.ReadFile(filepath.Join(atomicfile.Resolve(checkpoint), hfConfigFile)); err == nil && json.Unmarshal(data, &cfg) == nil {
		bos, eos = firstID(cfg.BOS), firstID(cfg.EOS)
	}
	if data, err := os.ReadFile(path); err == nil && llama2c.IsSentencePieceJSON(data) {
		tok, err := llama2c.ParseHF(data)
		if err != nil {
			return nil, errors.Wrap(err, path)
		}
		if bos >= 0 && bos != tok.BOS() || eos >= 0 && eos != tok.EOS() {
			return nil, errors.Errorf("%s: config.json's bos_token_id %d and eos_token_id %d differ from the SentencePiece-style tokenizer's %d and %d", path, bos, eos, tok.BOS(), tok.EOS())
		}
		return tok, nil
	}
	t, err := bytebpe.LoadTokenizerJSON(path)
	if err != nil {
		return nil, errors.Wrapf(err, "%s is neither byte-level BPE (GPT-2's or LLaMA 3's pre-tokenizer) nor SentencePiece-style BPE with byte_fallback (LLaMA 2's, TinyLlama's), the Hugging Face kinds this command reads; give a llama2.c tokenizer.bin of the same vocabulary with -tokenizer", path)
	}
	h := &hfTokenizer{t: t, bos: bos, eos: eos}
	var tc struct {
		BOS any `json:"bos_token"`
		EOS any `json:"eos_token"`
	}
	if data, err := os.ReadFile(filepath.Join(filepath.Dir(path), hfTokenizerConfigFile)); err == nil && json.Unmarshal(data, &tc) == nil {
		if h.bos < 0 {
			h.bos = tokenID(t, tc.BOS)
		}
		if h.eos < 0 {
			h.eos = tokenID(t, tc.EOS)
		}
	}
	for _, s := range []struct {
		id   *int
		name string
	}{{&h.bos, "bos"}, {&h.eos, "eos"}} {
		if *s.id < 0 || *s.id >= t.VocabSize() {
			return nil, errors.Errorf("%s: no usable %s token id: set %s_token_id in the checkpoint's config.json or %s_token in tokenizer_config.json", path, s.name, s.name, s.name)
		}
	}
	return h, nil
}

// firstID reads a token id of config.json: a number, or the first of a
// list (LLaMA 3 Instruct lists several EOS ids); -1 when absent.
func firstID(raw json.RawMessage) int {
	var one int
	if json.Unmarshal(raw, &one) == nil && len(raw) > 0 && string(raw) != "null" {
		return one
	}
	var list []int
	if json.Unmarshal(raw, &list) == nil && len(list) > 0 {
		return list[0]
	}
	return -1
}

// tokenID looks up a special token of tokenizer_config.json, given as its
// text or as {"content": text}; -1 when absent.
func tokenID(t *bytebpe.Tokenizer, v any) int {
	s, _ := v.(string)
	if m, ok := v.(map[string]any); ok {
		s, _ = m["content"].(string)
	}
	if id, ok := t.TokenToID(s); ok && s != "" {
		return id
	}
	return -1
}

// torchDtype reads config.json's torch_dtype ("" when absent).
func torchDtype(dir string) string {
	var cfg struct {
		Dtype string `json:"torch_dtype"`
	}
	data, err := os.ReadFile(filepath.Join(atomicfile.Resolve(dir), hfConfigFile))
	if err != nil || json.Unmarshal(data, &cfg) != nil {
		return ""
	}
	return cfg.Dtype
}

// saveHFStream writes the base model in s to dir as a Hugging Face
// checkpoint in the layout synth and transformers write: config.json
// (cfgJSON), and the weights in dtype ("bf16" or "f32") as
// model.safetensors or, above maxShard bytes, shards with their index. Each
// tensor is converted from the store on its way to the file, so the save
// needs one tensor's copy beyond the store. dir must exist; it is filled,
// not swapped (callers write into a folder that is swapped in as a whole).
func saveHFStream(dir string, c llama.Config, s *layers.Store, dtype string, cfgJSON []byte, maxShard int64) error {
	bytesPer, tdtype := 4, tensorfile.F32
	if dtype == "bf16" {
		bytesPer, tdtype = 2, tensorfile.BF16
	}
	ts := hfTensors(c)
	groups := shards(ts, bytesPer, maxShard)
	weightMap := map[string]string{}
	var total int64
	for i, g := range groups {
		name := hfSingleWeights
		if len(groups) > 1 {
			name = shardName(i, len(groups))
		}
		specs := make([]tensorfile.Spec, len(g))
		for j, t := range g {
			specs[j] = tensorfile.Spec{Name: t.name, Dtype: tdtype, Shape: t.shape}
			weightMap[t.name] = name
			total += elements(t.shape) * int64(bytesPer)
		}
		err := tensorfile.WriteStream(filepath.Join(dir, name), specs, map[string]string{"format": "pt"}, func(sp tensorfile.Spec, w io.Writer) error {
			return writeStoreTensor(s, sp, bytesPer, w)
		})
		if err != nil {
			return errors.Wrap(err, "saving the Hugging Face weights")
		}
	}
	if len(groups) > 1 {
		index, err := marshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap})
		if err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, hfWeightsIndex), index); err != nil {
			return err
		}
	}
	return atomicfile.WriteBytes(filepath.Join(dir, hfConfigFile), cfgJSON)
}

// writeStoreTensor writes the store's tensor sp.Name in torch layout
// ([out, in] for linears) as float32 or bfloat16 (bytesPer 4 or 2) bytes.
func writeStoreTensor(s *layers.Store, sp tensorfile.Spec, bytesPer int, w io.Writer) error {
	p, ok := s.Get(sp.Name)
	if !ok {
		return errors.Errorf("the store lacks %s", sp.Name)
	}
	var at func(i int) float64
	switch d := p.Value.Data().(type) {
	case []float32:
		at = func(i int) float64 { return float64(d[i]) }
	case []float64:
		at = func(i int) float64 { return d[i] }
	default:
		return errors.Errorf("%s: %T is not a float tensor", sp.Name, d)
	}
	n := p.Value.Shape().TotalSize()
	rows, cols := 1, n
	if p.Torch == layers.Transposed {
		sh := p.Value.Shape()
		rows, cols = sh[0], sh[1] // store [in, out]; the file wants [out, in]
	}
	buf := make([]byte, 0, 1<<16)
	put := func(x float64) error {
		if bytesPer == 2 {
			buf = binary.LittleEndian.AppendUint16(buf, uint16(gemm.ToBF16(float32(x))))
		} else {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(float32(x)))
		}
		if len(buf) >= 1<<16-8 {
			_, err := w.Write(buf)
			buf = buf[:0]
			return err
		}
		return nil
	}
	if p.Torch == layers.Transposed {
		for o := 0; o < cols; o++ {
			for i := 0; i < rows; i++ {
				if err := put(at(i*cols + o)); err != nil {
					return err
				}
			}
		}
	} else {
		for i := 0; i < n; i++ {
			if err := put(at(i)); err != nil {
				return err
			}
		}
	}
	_, err := w.Write(buf)
	return err
}
