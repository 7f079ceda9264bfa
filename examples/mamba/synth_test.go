package main

import (
	"strings"
	"testing"
)

// The synthetic corpora are deterministic and differ as documented: the
// target shares nouns with the source but none of its verbs or
// determiners, and its verbs agree with the subject.
func TestSynthCorpora(t *testing.T) {
	a, b := synthDocs(200, 1, enSentence), synthDocs(200, 1, enSentence)
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("synthDocs is not deterministic")
		}
	}
	words := func(docs []string) map[string]bool {
		out := map[string]bool{}
		for _, d := range docs {
			for _, w := range strings.Fields(strings.ToLower(strings.ReplaceAll(d, ".", " "))) {
				out[w] = true
			}
		}
		return out
	}
	src, tgt := words(a), words(synthDocs(200, 2, kaSentence))
	for _, w := range []string{"the", "sees", "that"} {
		if !src[w] || tgt[w] {
			t.Errorf("%q: in source %t, in target %t", w, src[w], tgt[w])
		}
	}
	for _, w := range []string{"cat", "cats", "ko"} {
		if !tgt[w] {
			t.Errorf("the target lacks %q", w)
		}
	}
	for _, d := range synthDocs(100, 3, kaSentence) {
		if d != strings.ToLower(d) || !strings.HasSuffix(d, " .") {
			t.Fatalf("target document %q is not lower case ending in \" .\"", d)
		}
		// In "<noun> <verb> ." the verb agrees (no singular noun ends in s).
		f := strings.Fields(d)
		if len(f) == 3 && strings.HasSuffix(f[1], "ata") && strings.HasSuffix(f[0], "s") {
			t.Errorf("plural subject with a singular verb: %q", d)
		}
	}
	for _, d := range a[:50] {
		if d[:1] != strings.ToUpper(d[:1]) || !strings.HasSuffix(d, ".") || strings.HasSuffix(d, " .") {
			t.Fatalf("source document %q is not capitalised with a glued period", d)
		}
	}
}
