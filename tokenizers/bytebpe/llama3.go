package bytebpe

import (
	"strings"
	"unicode/utf8"
)

// Llama3Pattern is the pre-tokenization regular expression of LLaMA 3's
// tokenizer.json (a Split pre-tokenizer before a ByteLevel one without its
// own regex; tiktoken's cl100k pattern). Go's regexp has no lookahead, so
// the package does not compile it; a tokenizer loaded with it splits text
// by a hand-written scanner of the same semantics.
const Llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// longS is U+017F LATIN SMALL LETTER LONG S, which (?i) folds to "s".
const longS = "\u017f"

// contractionEnd returns the end of a case-insensitive 's 't 're 've 'm
// 'll 'd at s[i:] (s[i] == '\”), or -1.
func contractionEnd(s string, i int) int {
	rest := s[i+1:]
	if strings.HasPrefix(rest, longS) {
		return i + 1 + len(longS)
	}
	if rest == "" {
		return -1
	}
	switch rest[0] | 0x20 {
	case 's', 't', 'm', 'd':
		return i + 2
	case 'r', 'v', 'l':
		if len(rest) >= 2 {
			two := string([]byte{rest[0] | 0x20, rest[1] | 0x20})
			if (two == "re" || two == "ve" || two == "ll") && isASCIILetter(rest[0]) && isASCIILetter(rest[1]) {
				return i + 3
			}
		}
	}
	return -1
}

func isASCIILetter(b byte) bool { return 'a' <= b|0x20 && b|0x20 <= 'z' }

// isNewline reports whether r is \r or \n.
func isNewline(r rune) bool { return r == '\r' || r == '\n' }

// nextPieceLlama3 returns the end of the pre-token of Llama3Pattern that
// starts at s[i:], i < len(s), trying the pattern's alternatives in order
// as a backtracking engine does.
func nextPieceLlama3(s string, i int) int {
	r, w, c := runeAt(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if j := contractionEnd(s, i); j > 0 {
			return j
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c == classLetter {
		return runEnd(s, i+w, classLetter)
	}
	if !isNewline(r) && c != classNumber && i+w < len(s) {
		if _, _, c2 := runeAt(s, i+w); c2 == classLetter {
			return runEnd(s, i+w, classLetter)
		}
	}
	// \p{N}{1,3}
	if c == classNumber {
		j := i + w
		for k := 1; k < 3 && j < len(s); k++ {
			_, w2, c2 := runeAt(s, j)
			if c2 != classNumber {
				break
			}
			j += w2
		}
		return j
	}
	// " ?[^\s\p{L}\p{N}]+[\r\n]*"
	start := -1
	if c == classOther {
		start = i
	} else if r == ' ' && i+1 < len(s) {
		if _, _, c2 := runeAt(s, i+1); c2 == classOther {
			start = i + 1
		}
	}
	if start >= 0 {
		j := runEnd(s, start, classOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// Whitespace: "\s*[\r\n]+" up to the run's last newline, else
	// "\s+(?!\S)" (the run giving up its last rune to a non-space), else
	// "\s+".
	end := runEnd(s, i, classSpace)
	if k := strings.LastIndexAny(s[i:end], "\r\n"); k >= 0 {
		return i + k + 1
	}
	if end == len(s) {
		return end
	}
	_, lastW := utf8.DecodeLastRuneInString(s[:end])
	if end-lastW > i {
		return end - lastW
	}
	return end
}
