package llama

import (
	"bufio"
	"encoding/binary"
	"io"
	"math"
	"math/bits"
	"os"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// llama2cHeaderSize is the size of a version-0 llama2.c header: seven
// little-endian int32s (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len).
const llama2cHeaderSize = 28

// llama2cMagic starts the newer llama2.c formats (version ≥ 1), which this
// package does not read ("ak42" little-endian).
const llama2cMagic = 0x616b3432

// LoadLlama2C reads a llama2.c checkpoint in the original (version 0)
// format: the seven int32 header fields, then float32 weights in llama2.c's
// order (token embedding, per-layer rms_att, wq, wk, wv, wo, rms_ffn, w1, w2,
// w3, rms_final, the unused freq_cis tables, and the classifier when
// vocab_size is negative, which marks untied embeddings). The file size is
// checked against the header before the weights are read. The store (of
// dtype dt) holds the weights under Hugging Face names, frozen, with the
// Interleaved rotary layout; norm eps is 1e-5 and rope theta 10000, as in
// llama2.c. A NaN or ±Inf weight is an error naming the tensor.
func LoadLlama2C(path string, dt tensor.Dtype) (Config, *layers.Store, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, nil, errors.Wrap(err, "llama")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Config{}, nil, errors.Wrap(err, "llama")
	}
	header := make([]byte, llama2cHeaderSize)
	if _, err := io.ReadFull(f, header); err != nil {
		return Config{}, nil, errors.Wrapf(err, "llama: %s: reading the llama2.c header", path)
	}
	c, want, err := parseLlama2CHeader(header, st.Size())
	if err != nil {
		return Config{}, nil, errors.Wrap(err, path)
	}
	body := make([]byte, want-llama2cHeaderSize)
	if _, err := io.ReadFull(f, body); err != nil {
		return Config{}, nil, errors.Wrapf(err, "llama: %s: reading the weights", path)
	}
	s, err := llama2cStore(c, body, dt)
	return c, s, errors.Wrap(err, path)
}

// ParseLlama2C is LoadLlama2C for a whole checkpoint held in memory.
func ParseLlama2C(data []byte, dt tensor.Dtype) (Config, *layers.Store, error) {
	if len(data) < llama2cHeaderSize {
		return Config{}, nil, errors.Errorf("llama: a llama2.c checkpoint needs a %d-byte header, got %d bytes", llama2cHeaderSize, len(data))
	}
	c, _, err := parseLlama2CHeader(data[:llama2cHeaderSize], int64(len(data)))
	if err != nil {
		return Config{}, nil, err
	}
	s, err := llama2cStore(c, data[llama2cHeaderSize:], dt)
	return c, s, err
}

// parseLlama2CHeader validates the header and that the file has exactly the
// size it implies, which it returns.
func parseLlama2CHeader(h []byte, size int64) (Config, int64, error) {
	var v [7]int32
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(h[4*i:]))
	}
	if uint32(v[0]) == llama2cMagic {
		return Config{}, 0, errors.New("llama: this is a llama2.c checkpoint of version ≥ 1 (magic \"ak42\"); only the original version-0 format is supported (export with --version 0)")
	}
	vocab, tied := int(v[5]), v[5] > 0
	if vocab < 0 {
		vocab = -vocab
	}
	c := Config{
		Dim: int(v[0]), HiddenDim: int(v[1]), NLayers: int(v[2]), NHeads: int(v[3]), NKVHeads: int(v[4]),
		VocabSize: vocab, MaxSeqLen: int(v[6]), NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: tied, Rope: Interleaved,
	}
	if err := c.Validate(); err != nil {
		return Config{}, 0, errors.Wrapf(err, "llama: invalid llama2.c header %v", v)
	}
	n, ok := llama2cFloats(c)
	if !ok || n > (math.MaxInt64-llama2cHeaderSize)/4 {
		return Config{}, 0, errors.Errorf("llama: llama2.c header %v implies an impossibly large file", v)
	}
	want := llama2cHeaderSize + 4*int64(n)
	if size != want {
		return Config{}, 0, errors.Errorf("llama: llama2.c file has %d bytes, its header (dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d, seq %d, tied %t) implies %d",
			size, c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKVHeads, c.VocabSize, c.MaxSeqLen, c.TiedEmbeddings, want)
	}
	return c, want, nil
}

// llama2cFloats counts the float32s after the header, reporting overflow.
func llama2cFloats(c Config) (uint64, bool) {
	var total uint64
	ok := true
	add := func(factors ...int) {
		p := uint64(1)
		for _, f := range factors {
			hi, lo := bits.Mul64(p, uint64(f))
			ok = ok && hi == 0
			p = lo
		}
		var carry uint64
		total, carry = bits.Add64(total, p, 0)
		ok = ok && carry == 0
	}
	d, kv, l := c.Dim, c.KVDim(), c.NLayers
	add(c.VocabSize, d)           // token embedding
	add(l, d)                     // rms_att
	add(l, d, d)                  // wq
	add(l, d, kv)                 // wk
	add(l, d, kv)                 // wv
	add(l, d, d)                  // wo
	add(l, d)                     // rms_ffn
	add(3, l, d, c.HiddenDim)     // w1, w2, w3
	add(d)                        // rms_final
	add(c.MaxSeqLen, c.HeadDim()) // freq_cis_real and _imag, seq·head/2 each
	if !c.TiedEmbeddings {
		add(c.VocabSize, d) // wcls
	}
	return total, ok
}

// llama2cStore converts the weights (everything after the header) into a
// store. llama2.c stores linear weights [out, in]; the store holds [in, out].
func llama2cStore(c Config, body []byte, dt tensor.Dtype) (*layers.Store, error) {
	off := 0
	next := func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(body[off+4*i:])))
		}
		off += 4 * n
		return out
	}
	d, kv, hid, L := c.Dim, c.KVDim(), c.HiddenDim, c.NLayers
	vals := map[string][]float64{EmbedName: next(c.VocabSize * d)}
	perLayer := func(name func(l int) string, n int, transpose func([]float64) []float64) {
		for l := 0; l < L; l++ {
			v := next(n)
			if transpose != nil {
				v = transpose(v)
			}
			vals[name(l)] = v
		}
	}
	sites := c.Sites()
	site := func(target string) func(int) string {
		i := targetIndex[target]
		return func(l int) string { return sites[7*l+i].Weight }
	}
	// [out, in] → [in, out].
	tr := func(out, in int) func([]float64) []float64 {
		return func(v []float64) []float64 { return transpose(v, out, in) }
	}
	perLayer(inputNormName, d, nil)
	perLayer(site("q_proj"), d*d, tr(d, d))
	perLayer(site("k_proj"), kv*d, tr(kv, d))
	perLayer(site("v_proj"), kv*d, tr(kv, d))
	perLayer(site("o_proj"), d*d, tr(d, d))
	perLayer(postNormName, d, nil)
	perLayer(site("gate_proj"), hid*d, tr(hid, d))
	perLayer(site("down_proj"), d*hid, tr(d, hid))
	perLayer(site("up_proj"), hid*d, tr(hid, d))
	vals[FinalNormName] = next(d)
	off += 4 * c.MaxSeqLen * c.HeadDim() // freq_cis_real and _imag
	if !c.TiedEmbeddings {
		vals[HeadName] = transpose(next(c.VocabSize*d), c.VocabSize, d)
	}
	if off != len(body) {
		return nil, errors.Errorf("llama: llama2.c weights end at byte %d of %d", off, len(body))
	}
	return storeFrom(c, dt, vals)
}

// targetIndex is the position of each target among a block's seven sites.
var targetIndex = map[string]int{"q_proj": 0, "k_proj": 1, "v_proj": 2, "o_proj": 3, "gate_proj": 4, "up_proj": 5, "down_proj": 6}

// transpose returns the [cols, rows] transpose of a row-major [rows, cols]
// matrix.
func transpose[T any](v []T, rows, cols int) []T {
	out := make([]T, len(v))
	const tile = 64 // tiles keep both sides' cache lines in cache
	for r0 := 0; r0 < rows; r0 += tile {
		for c0 := 0; c0 < cols; c0 += tile {
			for r := r0; r < min(r0+tile, rows); r++ {
				for c := c0; c < min(c0+tile, cols); c++ {
					out[c*rows+r] = v[r*cols+c]
				}
			}
		}
	}
	return out
}

// storeFrom builds a frozen store from every base parameter's values in
// store layout; a NaN or ±Inf (also one that a value too large for a
// float32 store becomes) is an error naming the tensor.
func storeFrom(c Config, dt tensor.Dtype, vals map[string][]float64) (*layers.Store, error) {
	s, err := layers.NewStore(dt)
	if err != nil {
		return nil, errors.Wrap(err, "llama")
	}
	for _, spec := range paramSpecs(c) {
		v, ok := vals[spec.Name]
		if !ok || len(v) != spec.Shape.TotalSize() {
			return nil, errors.Errorf("llama: %s is missing or has %d values for shape %v", spec.Name, len(v), spec.Shape)
		}
		p := &layers.Param{Name: spec.Name, Value: layers.FromFloat64(dt, spec.Shape, v), Torch: spec.Torch}
		if err := layers.CheckFinite(spec.Name, p.Value); err != nil {
			return nil, errors.Wrap(err, "llama")
		}
		if err := s.Add(p); err != nil {
			return nil, errors.Wrap(err, "llama")
		}
	}
	return s, nil
}

// SaveLlama2C writes the model in s as a version-0 llama2.c checkpoint, the
// format llama2.c's run.c loads: the seven int32 header fields (vocab_size
// negative for untied embeddings), then float32 weights in llama2.c's order
// and [out, in] layout, with the rotary tables freq_cis_real and
// freq_cis_imag (cos and sin of position × theta^(−2i/head_dim)) that
// llama2.c's export writes and run.c skips. A Halves model is permuted back
// into llama2.c's Interleaved layout on the way. run.c hard-codes norm eps
// 1e-5 and rope theta 10000, so a model with other values is refused.
// Adapter parameters are not written; the file is replaced atomically.
func SaveLlama2C(path string, c Config, s *layers.Store) error {
	if c.RopeScaling.Enabled() {
		return errors.New("llama.SaveLlama2C: llama2.c's run.c has no rope_scaling; save this model with SaveHF instead")
	}
	if err := checkStore(c, s); err != nil {
		return err
	}
	if c.NormEps != 1e-5 || c.RopeTheta != 10000 {
		return errors.Errorf("llama.SaveLlama2C: llama2.c's run.c computes with norm eps 1e-5 and rope theta 10000, this model has %g and %g; save it with SaveHF instead", c.NormEps, c.RopeTheta)
	}
	vocab := int32(c.VocabSize)
	if !c.TiedEmbeddings {
		vocab = -vocab
	}
	header := [7]int32{int32(c.Dim), int32(c.HiddenDim), int32(c.NLayers), int32(c.NHeads), int32(c.NKVHeads), vocab, int32(c.MaxSeqLen)}
	err := atomicfile.Write(path, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		if err := binary.Write(bw, binary.LittleEndian, header); err != nil {
			return err
		}
		put := func(v []float64) error {
			var b [4]byte
			for _, x := range v {
				binary.LittleEndian.PutUint32(b[:], math.Float32bits(float32(x)))
				if _, err := bw.Write(b[:]); err != nil {
					return err
				}
			}
			return nil
		}
		// get returns a parameter in llama2.c's layout: [out, in] for linear
		// weights, Interleaved rotary order for q_proj and k_proj.
		get := func(name string) []float64 {
			p, _ := s.Get(name)
			v := layers.Float64s(p.Value)
			if c.Rope == Halves {
				v = toInterleaved(c, name, v)
			}
			if p.Torch == layers.Transposed {
				sh := p.Value.Shape()
				v = transpose(v, sh[0], sh[1])
			}
			return v
		}
		sites := c.Sites()
		var names []string
		perLayer := func(name func(l int) string) {
			for l := 0; l < c.NLayers; l++ {
				names = append(names, name(l))
			}
		}
		site := func(target string) func(int) string {
			i := targetIndex[target]
			return func(l int) string { return sites[7*l+i].Weight }
		}
		names = append(names, EmbedName)
		perLayer(inputNormName)
		for _, t := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
			perLayer(site(t))
		}
		perLayer(postNormName)
		for _, t := range []string{"gate_proj", "down_proj", "up_proj"} {
			perLayer(site(t))
		}
		names = append(names, FinalNormName)
		for _, n := range names {
			if err := put(get(n)); err != nil {
				return err
			}
		}
		re, im := ropeTables(c)
		if err := put(re); err != nil {
			return err
		}
		if err := put(im); err != nil {
			return err
		}
		if !c.TiedEmbeddings {
			if err := put(get(HeadName)); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
	return errors.Wrap(err, "llama.SaveLlama2C")
}

// ropeTables returns llama2.c's freq_cis_real and freq_cis_imag: for every
// position t < MaxSeqLen and pair i < head_dim/2, cos and sin of
// t·theta^(−2i/head_dim), computed in float32 as llama2.c's PyTorch export
// does.
func ropeTables(c Config) (re, im []float64) {
	hd := c.HeadDim()
	for t := 0; t < c.MaxSeqLen; t++ {
		for i := 0; i < hd/2; i++ {
			freq := float32(1 / math.Pow(c.RopeTheta, float64(float32(2*i)/float32(hd))))
			a := float64(float32(t) * freq)
			re, im = append(re, math.Cos(a)), append(im, math.Sin(a))
		}
	}
	return re, im
}

// toInterleaved undoes toHalves: the output feature s·headDim/2 + j of each
// head of a q_proj or k_proj weight ([in, out]) moves back to 2j+s.
func toInterleaved(c Config, name string, v []float64) []float64 {
	return permuteRotary(c, name, v, false)
}
