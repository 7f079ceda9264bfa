package bytebpe_test

import (
	"fmt"
	"log"

	"github.com/lilygo/lily/tokenizers/bytebpe"
)

// Train a small vocabulary with RoBERTa's special tokens, encode a pair of
// texts with truncation ("the newest tower" loses "Ġtower" so that the pair
// fits in 8 ids) and padding, and decode it back.
func Example() {
	texts := []string{
		"the lowest tower is lower than the newest tower",
		"the newer towers are taller; the lower ones are older",
		"the lowest, the newest, the widest",
	}
	tok, err := bytebpe.TrainStrings(texts, bytebpe.TrainOptions{
		NumMerges:     40,
		SpecialTokens: bytebpe.RoBERTaSpecials, // <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Tokenize("the lowest towers"))

	e, err := tok.EncodePair("the newest tower", "lower", bytebpe.EncodeOptions{MaxLength: 8, PadTo: 10})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.IDs)
	fmt.Println(e.AttentionMask)
	text, err := tok.Decode(e.IDs, false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(text)
	// Output:
	// [the Ġlowest Ġtower s]
	// [0 271 282 2 2 80 265 2 1 1]
	// [1 1 1 1 1 1 1 1 0 0]
	// <s>the newest</s></s>lower</s><pad><pad>
}

// Load GPT-2's files, which have no RoBERTa specials, and append them after
// the vocabulary before encoding with RoBERTa's template.
func ExampleTokenizer_AddSpecialToken() {
	tok, err := bytebpe.Load("path/to/gpt2") // a folder with encoder.json and vocab.bpe
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Encode("Hello world")) // [15496 995]
	for _, s := range []string{bytebpe.BOS, bytebpe.Pad, bytebpe.EOS, bytebpe.Unk, bytebpe.Mask} {
		if err := tok.AddSpecialToken(s, tok.VocabSize()); err != nil {
			log.Fatal(err)
		}
	}
	e, err := tok.EncodeSingle("Hello world", bytebpe.EncodeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.IDs) // [50257 15496 995 50259]
}
