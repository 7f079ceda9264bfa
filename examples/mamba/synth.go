package main

import (
	"math/rand/v2"
	"strings"
)

// The built-in corpora of the run without text flags: two made-up languages
// that share nouns and adjectives but differ in grammar and in every other
// word, generated from fixed seeds.
//
// The source is English-like: subject–verb–object, determiners and
// adjectives before the noun, subject–verb agreement marked by -s, capital
// letters and a period glued to the last word. The target is verb-final:
// the same nouns (singular or plural) and adjectives, but no determiners,
// adjectives after the noun, the object followed by the particle "ko", and
// invented verbs that agree with the subject through the endings "ata"
// (singular) and "enu" (plural) — in "ke" clauses ("X says that …") only
// after the whole embedded clause; lower case, with the period set off by a
// space. A model pretrained on the source knows the nouns, and which of them
// are plural, but not the grammar nor the verbs, which a tokenizer learnt on
// the source splits into pieces.

// pick returns a random element of v.
func pick(rng *rand.Rand, v []string) string { return v[rng.IntN(len(v))] }

// English-like source vocabulary: nouns as singular/plural pairs, verbs as
// third-person singular/plural pairs.
var (
	enNouns = [][2]string{{"cat", "cats"}, {"dog", "dogs"}, {"bird", "birds"}, {"child", "children"}, {"teacher", "teachers"},
		{"farmer", "farmers"}, {"river", "rivers"}, {"house", "houses"}, {"garden", "gardens"}, {"book", "books"},
		{"doctor", "doctors"}, {"horse", "horses"}, {"letter", "letters"}, {"window", "windows"}, {"village", "villages"},
		{"student", "students"}, {"song", "songs"}, {"tree", "trees"}, {"boat", "boats"}, {"friend", "friends"}}
	enAdjectives = []string{"small", "old", "red", "quiet", "happy", "young", "green", "tired", "clever", "large", "brave", "strange"}
	enTransitive = [][2]string{{"sees", "see"}, {"likes", "like"}, {"finds", "find"}, {"follows", "follow"}, {"reads", "read"},
		{"watches", "watch"}, {"helps", "help"}, {"carries", "carry"}, {"paints", "paint"}, {"remembers", "remember"}}
	enIntransitive = [][2]string{{"sleeps", "sleep"}, {"runs", "run"}, {"sings", "sing"}, {"waits", "wait"}, {"laughs", "laugh"},
		{"arrives", "arrive"}, {"works", "work"}, {"falls", "fall"}}
	enAdverbs      = []string{"quickly", "slowly", "often", "today", "again", "quietly", "happily"}
	enDetSingular  = []string{"the", "a", "every", "my", "our", "this", "that"}
	enDetPlural    = []string{"the", "some", "many", "my", "our", "these", "those"}
	enPrepositions = []string{"near", "under", "behind", "with", "beside"}
	enSayVerbs     = [][2]string{{"says", "say"}, {"thinks", "think"}, {"knows", "know"}}
	enConnectives  = []string{"and", "but", "because", "while"}
)

// enNounPhrase returns a noun phrase and whether it is plural.
func enNounPhrase(rng *rand.Rand, withPP bool) (string, bool) {
	plural := rng.IntN(3) == 0
	words := []string{pick(rng, enDetSingular)}
	if plural {
		words[0] = pick(rng, enDetPlural)
	}
	for n := 0; n < 2 && rng.IntN(2) == 0; n++ {
		words = append(words, pick(rng, enAdjectives))
	}
	noun := enNouns[rng.IntN(len(enNouns))]
	words = append(words, noun[boolIndex(plural)])
	if withPP && rng.IntN(5) == 0 {
		pp, _ := enNounPhrase(rng, false)
		words = append(words, pick(rng, enPrepositions), pp)
	}
	return strings.Join(words, " "), plural
}

// enClause returns one English-like clause; depth bounds embedding.
func enClause(rng *rand.Rand, depth int) string {
	subj, plural := enNounPhrase(rng, false)
	agree := func(v [2]string) string { return v[boolIndex(plural)] }
	switch r := rng.IntN(10); {
	case r < 5:
		obj, _ := enNounPhrase(rng, true)
		s := subj + " " + agree(enTransitive[rng.IntN(len(enTransitive))]) + " " + obj
		if rng.IntN(5) == 0 {
			s += " " + pick(rng, enAdverbs)
		}
		return s
	case r < 8 || depth == 0:
		s := subj + " " + agree(enIntransitive[rng.IntN(len(enIntransitive))])
		if rng.IntN(2) == 0 {
			s += " " + pick(rng, enAdverbs)
		}
		return s
	default:
		return subj + " " + agree(enSayVerbs[rng.IntN(len(enSayVerbs))]) + " that " + enClause(rng, depth-1)
	}
}

// enSentence returns a capitalised sentence ending in a period.
func enSentence(rng *rand.Rand) string {
	s := enClause(rng, 1)
	if rng.IntN(4) == 0 {
		s += " " + pick(rng, enConnectives) + " " + enClause(rng, 0)
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// The target's own words: verb stems that take the agreement endings,
// adverbs, verbs of saying and connectives. Nouns and adjectives are the
// source's.
var (
	kaTransitive   = []string{"sorm", "pelk", "anud", "vitr", "kolm", "hezd", "rumb", "gald"}
	kaIntransitive = []string{"dram", "lunt", "fesk", "ombr", "tazz"}
	kaAdverbs      = []string{"zeri", "polan", "umi", "hoki"}
	kaSayVerbs     = []string{"nel", "vub", "sint"}
	kaConnectives  = []string{"e", "dak", "ovi"}
)

// kaNounPhrase returns a target-language noun phrase (a source noun, then
// up to two source adjectives) and whether it is plural.
func kaNounPhrase(rng *rand.Rand) (string, bool) {
	plural := rng.IntN(3) == 0
	words := []string{enNouns[rng.IntN(len(enNouns))][boolIndex(plural)]}
	for n := 0; n < 2 && rng.IntN(2) == 0; n++ {
		words = append(words, pick(rng, enAdjectives))
	}
	return strings.Join(words, " "), plural
}

// kaVerb returns a verb stem with the ending that agrees with the subject.
func kaVerb(stem string, plural bool) string {
	if plural {
		return stem + "enu"
	}
	return stem + "ata"
}

// kaClause returns one target-language clause; depth bounds embedding.
func kaClause(rng *rand.Rand, depth int) string {
	subj, plural := kaNounPhrase(rng)
	switch r := rng.IntN(10); {
	case r < 5:
		obj, _ := kaNounPhrase(rng)
		s := subj + " " + obj + " ko"
		if rng.IntN(5) == 0 {
			s += " " + pick(rng, kaAdverbs)
		}
		return s + " " + kaVerb(pick(rng, kaTransitive), plural)
	case r < 8 || depth == 0:
		s := subj
		if rng.IntN(2) == 0 {
			s += " " + pick(rng, kaAdverbs)
		}
		return s + " " + kaVerb(pick(rng, kaIntransitive), plural)
	default:
		return subj + " ke " + kaClause(rng, depth-1) + " " + kaVerb(pick(rng, kaSayVerbs), plural)
	}
}

// kaSentence returns a lower-case sentence ending in " .".
func kaSentence(rng *rand.Rand) string {
	s := kaClause(rng, 1)
	if rng.IntN(4) == 0 {
		s += " , " + pick(rng, kaConnectives) + " " + kaClause(rng, 0)
	}
	return s + " ."
}

// synthDocs returns n documents of one to three sentences from sentence,
// drawn from a generator seeded by seed.
func synthDocs(n int, seed uint64, sentence func(*rand.Rand) string) []string {
	rng := rand.New(rand.NewPCG(seed, 0x73796e7468))
	docs := make([]string, n)
	for i := range docs {
		parts := make([]string, 1+rng.IntN(3))
		for j := range parts {
			parts[j] = sentence(rng)
		}
		docs[i] = strings.Join(parts, " ")
	}
	return docs
}

// boolIndex is 1 for true and 0 for false.
func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}
