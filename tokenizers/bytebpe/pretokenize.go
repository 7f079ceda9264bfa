package bytebpe

import (
	"unicode"
	"unicode/utf8"
)

// Pattern is GPT-2's pre-tokenization regular expression. Go's regexp has no
// lookahead, so the package does not compile it; PreTokenize implements the
// same splitting by hand.
const Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// Rune classes of the pattern. \s is Unicode White_Space (unicode.IsSpace),
// as in Python's regex module and Oniguruma; \p{L} and \p{N} are the Unicode
// general categories L and N. A byte that is not valid UTF-8 counts as
// "other".
const (
	classOther = iota
	classLetter
	classNumber
	classSpace
)

// runeAt decodes the rune at s[i:] and its class.
func runeAt(s string, i int) (r rune, width, class int) {
	r, width = utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && width <= 1 {
		return r, 1, classOther
	}
	switch {
	case r < utf8.RuneSelf:
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
			return r, 1, classLetter
		case '0' <= r && r <= '9':
			return r, 1, classNumber
		case r == ' ', '\t' <= r && r <= '\r':
			return r, 1, classSpace
		}
		return r, 1, classOther
	case unicode.IsLetter(r):
		return r, width, classLetter
	case unicode.IsNumber(r):
		return r, width, classNumber
	case unicode.IsSpace(r):
		return r, width, classSpace
	}
	return r, width, classOther
}

// runEnd returns the end of the run of runes of class c that starts at i.
func runEnd(s string, i, c int) int {
	for i < len(s) {
		_, w, cl := runeAt(s, i)
		if cl != c {
			break
		}
		i += w
	}
	return i
}

// nextPiece returns the end of the pre-token that starts at s[i:], i < len(s).
// The alternatives of Pattern are tried in order, as a backtracking regexp
// engine does at one position; every rune belongs to one of the four classes,
// so consecutive pre-tokens tile the text.
func nextPiece(s string, i int) int {
	r, w, c := runeAt(s, i)
	// 's 't 're 've 'm 'll 'd (case-sensitive).
	if r == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v', 'l':
			if i+2 < len(s) {
				switch s[i+1 : i+3] {
				case "re", "ve", "ll":
					return i + 3
				}
			}
		}
	}
	// " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" with the optional space.
	if r == ' ' && i+1 < len(s) {
		if _, _, c2 := runeAt(s, i+1); c2 != classSpace {
			return runEnd(s, i+1, c2)
		}
	}
	if c != classSpace {
		return runEnd(s, i+w, c)
	}
	// "\s+(?!\S)": the whitespace run, giving up its last rune when a
	// non-space follows; "\s+" when that would leave it empty.
	end := runEnd(s, i+w, classSpace)
	if end == len(s) {
		return end
	}
	_, lastW := utf8.DecodeLastRuneInString(s[:end])
	if end-lastW > i {
		return end - lastW
	}
	return end
}

// PreTokenize splits text the way GPT-2's pattern does. Concatenating the
// pieces gives text back.
func PreTokenize(text string) []string {
	var out []string
	for i := 0; i < len(text); {
		j := nextPiece(text, i)
		out = append(out, text[i:j])
		i = j
	}
	return out
}
