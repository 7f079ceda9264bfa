package bytebpe

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// preTokenizeCases were checked against Python's regex module running
// Pattern (regex.findall), which is what OpenAI's encoder.py does.
var preTokenizeCases = []struct {
	text string
	want []string
}{
	{"\n\n\nHello", []string{"\n\n", "\n", "Hello"}},
	{"a    b", []string{"a", "   ", " b"}},
	{"  x", []string{" ", " x"}},
	{"x  ", []string{"x", "  "}},
	{" ", []string{" "}},
	{"  ", []string{"  "}},
	{"x\n y", []string{"x", "\n", " y"}},
	{"x \ny", []string{"x", " ", "\n", "y"}},
	{"x\t\ty", []string{"x", "\t", "\t", "y"}},
	{"Hello  world!!", []string{"Hello", " ", " world", "!!"}},
	{" ...", []string{" ..."}},
	{" !x", []string{" !", "x"}},
	{"it's 'sx 'S 'll'", []string{"it", "'s", " '", "sx", " '", "S", " '", "ll", "'"}},
	{"''s", []string{"''", "s"}},
	{"?'d", []string{"?'", "d"}},
	{"a1b2", []string{"a", "1", "b", "2"}},
	{" 12ab", []string{" 12", "ab"}},
	{"3.14", []string{"3", ".", "14"}},
	{"x\u00a0\u00a0y", []string{"x", "\u00a0", "\u00a0", "y"}},
	{"\u3000\u3000日本", []string{"\u3000", "\u3000", "日本"}},
	{"e\u0301t\u00e9", []string{"e", "\u0301", "t\u00e9"}},
	{"ab\u200dcd", []string{"ab", "\u200d", "cd"}},
	{"🎉🎉 x", []string{"🎉🎉", " x"}},
	{"a\u0085\u0085b", []string{"a", "\u0085", "\u0085", "b"}},
	{" \n", []string{" \n"}},
	{"\n ", []string{"\n "}},
	{"x\v\fy", []string{"x", "\v", "\f", "y"}},
	{"  'll", []string{" ", " '", "ll"}},
	{"", nil},
	{"\xff\xfe ab", []string{"\xff\xfe", " ab"}}, // invalid UTF-8 bytes count as "other"
}

func TestPreTokenize(t *testing.T) {
	for _, c := range preTokenizeCases {
		if got := PreTokenize(c.text); !slices.Equal(got, c.want) {
			t.Errorf("PreTokenize(%q)\n got %q\nwant %q", c.text, got, c.want)
		}
	}
}

// whiteSpace is Unicode's White_Space property, which Go's regexp cannot
// name; Go's \s is ASCII only.
const whiteSpace = `\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

// emulated is Pattern without its lookahead, for Go's regexp, whose
// alternation is leftmost-first like Python's.
var emulated = regexp.MustCompile(`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{L}\p{N}` + whiteSpace + `]+|[` + whiteSpace + `]+`)

// emulatedSplit splits as Pattern does with a second, independent method:
// regexp matching, with \s+(?!\S) done afterwards by handing a whitespace
// run's last rune back when a non-space follows it.
func emulatedSplit(s string) []string {
	var out []string
	for pos := 0; pos < len(s); {
		loc := emulated.FindStringIndex(s[pos:])
		if loc == nil || loc[0] != 0 {
			panic("pattern failed to match at " + s[pos:])
		}
		piece := s[pos : pos+loc[1]]
		isSpace := func(r rune) bool {
			return strings.ContainsRune(" \t\n\v\f\r\u0085\u00a0\u1680\u2028\u2029\u202f\u205f\u3000", r) || (0x2000 <= r && r <= 0x200a)
		}
		if strings.TrimFunc(piece, isSpace) == "" && pos+loc[1] < len(s) {
			if utf8.RuneCountInString(piece) > 1 {
				_, w := utf8.DecodeLastRuneInString(piece)
				piece = piece[:len(piece)-w]
			}
		}
		out = append(out, piece)
		pos += len(piece)
	}
	return out
}

func TestPreTokenizeMatchesRegexp(t *testing.T) {
	for _, c := range preTokenizeCases {
		if !utf8.ValidString(c.text) {
			continue
		}
		if got := emulatedSplit(c.text); !slices.Equal(got, c.want) {
			t.Fatalf("the emulation itself is wrong on %q: %q", c.text, got)
		}
	}
	alphabet := []string{" ", " ", "\n", "\t", "\r", "\v", "\u00a0", "\u2003", "\u3000", "\u0085", "'", "s", "t", "r", "e", "l", "d", "m", "v",
		"S", "x", "1", "٣", "²", "Ⅻ", ".", ",", "!", "-", "é", "\u0301", "日", "🎉", "\u200d", "Ж"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		for n := rng.IntN(16); n >= 0; n-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s := b.String()
		got, want := PreTokenize(s), emulatedSplit(s)
		if !slices.Equal(got, want) {
			t.Fatalf("PreTokenize(%q)\n got %q\nwant %q", s, got, want)
		}
	}
}
