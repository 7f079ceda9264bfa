// Package bytebpe is byte-level BPE tokenization exactly as GPT-2 and RoBERTa
// do it: text is split into pre-tokens by GPT-2's pattern (see Pattern), the
// UTF-8 bytes of each pre-token are written as printable runes ("Ġ" for a
// space), and the merges are applied by rank, lowest first.
//
// Load reads the Hugging Face layout (vocab.json and merges.txt, as RoBERTa
// ships it), OpenAI's GPT-2 files (encoder.json and vocab.bpe) or the single
// tokenizer.json of Hugging Face's tokenizers library (see
// LoadTokenizerJSON), as GPT-NeoX, Mamba and LLaMA 3 checkpoints ship it
// (LLaMA 3 splits text by its own pattern, Llama3Pattern). Encode
// gives the plain BPE ids of a text, as GPT-2's encoder does; EncodeSingle and
// EncodePair add RoBERTa's template (<s> A </s> and <s> A </s></s> B </s>),
// truncation, padding and masks; Decode turns ids back into text. Train learns
// a new vocabulary from texts and Save writes it in the Hugging Face layout.
//
// Special tokens are the vocabulary entries that BPE cannot produce: neither
// the token of a byte nor the result of a merge ("<s>", "<pad>", "</s>",
// "<unk>", "<mask>" in RoBERTa's vocabulary, "<|endoftext|>" in GPT-2's), plus
// those added with AddSpecialToken. Plain Encode never produces them; with
// EncodeOptions.ParseSpecial their text in the input maps to their ids.
//
// Two details of the splitting: \s is Unicode's White_Space property, as in
// Python's regex module that OpenAI's encoder uses (so U+0085 is whitespace,
// where JavaScript ports of the encoder differ), and the letter and number
// classes come from Go's unicode package (Unicode 15.0), so characters
// assigned in later Unicode versions may split differently than under a
// newer Python.
//
// Why it is written here rather than taken from a library: the most complete
// Go port, github.com/sugarme/tokenizer (v0.3.0), is known to disagree with
// the reference encoder on ordinary inputs such as a run of newlines before a
// word or a long run of one letter, and Go's regexp has no lookahead, so
// GPT-2's pattern (with its \s+(?!\S), where a run of whitespace followed by
// a non-space gives up its last rune to the next pre-token) cannot be compiled
// by any Go library without emulation. Byte-level BPE itself is small: a
// hand-written scanner with the pattern's exact semantics, the byte-to-rune
// table, merging by rank (here in O(n log n) per word with a heap, keeping
// the reference's order of merges), and a trainer with incremental pair
// counts. The tests compare it with ids from an independent implementation
// of OpenAI's encoder on the real GPT-2 files, with the reference merge loop
// and training loop written plainly, and with a regexp-based emulation of the
// pattern.
package bytebpe
