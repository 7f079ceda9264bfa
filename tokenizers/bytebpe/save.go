package bytebpe

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"strconv"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
)

// Save writes the tokenizer to dir (created if missing) as vocab.json and
// merges.txt, the Hugging Face layout, which Load reads back to an identical
// tokenizer. The two files are replaced together (atomicfile.UpdateDir): a
// process killed at any point leaves the previous pair or the new one; other
// entries of dir are kept.
func (t *Tokenizer) Save(dir string) error {
	err := atomicfile.UpdateDir(dir, func(tmp string) error {
		if err := atomicfile.Write(filepath.Join(tmp, VocabFile), t.writeVocab); err != nil {
			return err
		}
		return atomicfile.Write(filepath.Join(tmp, MergesFile), t.writeMerges)
	})
	return errors.Wrap(err, "bytebpe: saving")
}

// writeVocab writes vocab.json: one token a line, in id order.
func (t *Tokenizer) writeVocab(w io.Writer) error {
	bw := bufio.NewWriter(w)
	var key bytes.Buffer
	enc := json.NewEncoder(&key)
	enc.SetEscapeHTML(false)
	bw.WriteString("{")
	first := true
	for id, tok := range t.idToToken {
		if tok == "" {
			continue
		}
		if !first {
			bw.WriteString(",")
		}
		first = false
		key.Reset()
		if err := enc.Encode(tok); err != nil {
			return err
		}
		bw.WriteString("\n  ")
		bw.Write(bytes.TrimSuffix(key.Bytes(), []byte("\n")))
		bw.WriteString(": ")
		bw.WriteString(strconv.Itoa(id))
	}
	bw.WriteString("\n}\n")
	return bw.Flush()
}

// writeMerges writes merges.txt: a version line, then one merge a line.
func (t *Tokenizer) writeMerges(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("#version: 0.2\n")
	for _, m := range t.merges {
		bw.WriteString(m[0])
		bw.WriteByte(' ')
		bw.WriteString(m[1])
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
