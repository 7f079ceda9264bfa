package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
)

// The synthetic sentiment task of the demo. Every sentence is built from a
// few clauses whose polarity comes from an adjective or verb and is flipped
// by each negation in its scope; intensifiers change nothing. The label
// therefore needs composition: "the plot was not very good" is negative,
// "i did not think that the ending was bad" positive, and in "A but B" only
// B counts. Clauses joined by "and" or followed by ", so i would recommend
// it" agree, so that unlabeled text alone tells which words go together.
var (
	synthSubjects  = []string{"the movie", "the film", "the plot", "the acting", "the food", "the service", "the hotel", "the book"}
	synthPositive  = []string{"good", "great", "excellent", "wonderful", "lovely", "superb"}
	synthNegative  = []string{"bad", "awful", "terrible", "boring", "dull", "poor"}
	synthIntensify = []string{"very", "really", "extremely", "quite"}
	synthNegators  = []string{"not", "never"}
	synthCopulas   = []string{"was", "is"}
	synthLike      = []string{"loved", "liked"}
	synthDislike   = []string{"hated", "disliked"}
	synthFlipFrame = []string{"i do not think that", "it is not true that"}
	synthKeepFrame = []string{"i think that", "everyone agrees that"}
	synthRecommend = []string{"would recommend it", "will go back"}
	synthWarn      = []string{"would not recommend it", "will never go back"}
)

// synthClause returns a clause and whether it is positive.
func synthClause(rng *rand.Rand) (string, bool) {
	pick := func(v []string) string { return v[rng.IntN(len(v))] }
	subj := pick(synthSubjects)
	if rng.IntN(4) == 0 { // "i (did not) like the X"
		pos := rng.IntN(2) == 0
		verb := pick(synthLike)
		if !pos {
			verb = pick(synthDislike)
		}
		if rng.IntN(2) == 0 {
			return fmt.Sprintf("i %s %s", verb, subj), pos
		}
		base := map[string]string{"loved": "love", "liked": "like", "hated": "hate", "disliked": "dislike"}[verb]
		return fmt.Sprintf("i did not %s %s", base, subj), !pos
	}
	pos := rng.IntN(2) == 0
	adj := pick(synthPositive)
	if !pos {
		adj = pick(synthNegative)
	}
	words := []string{subj, pick(synthCopulas)}
	if rng.IntN(2) == 0 {
		words = append(words, pick(synthNegators))
		pos = !pos
	}
	if rng.IntN(2) == 0 {
		words = append(words, pick(synthIntensify))
	}
	return strings.Join(append(words, adj), " "), pos
}

// synthSentence returns one sentence and its label (1 positive, 0 negative).
func synthSentence(rng *rand.Rand) (string, int) {
	pick := func(v []string) string { return v[rng.IntN(len(v))] }
	text, pos := synthClause(rng)
	switch rng.IntN(6) {
	case 0: // "A but B": B decides.
		b, posB := synthClause(rng)
		text, pos = text+" but "+b, posB
	case 1: // a frame that flips or keeps the clause.
		if rng.IntN(2) == 0 {
			text, pos = pick(synthFlipFrame)+" "+text, !pos
		} else {
			text = pick(synthKeepFrame) + " " + text
		}
	case 2: // "A and B" with B agreeing with A.
		b, posB := synthClause(rng)
		for posB != pos {
			b, posB = synthClause(rng)
		}
		text += " and " + b
	case 3: // a consequence that agrees with the clause.
		if pos {
			text += " , so i " + pick(synthRecommend)
		} else {
			text += " , so i " + pick(synthWarn)
		}
	}
	label := 0
	if pos {
		label = 1
	}
	return text, label
}

// writeSynthGLUE writes the synthetic task in GLUE's SST-2 format (header
// "sentence\tlabel") to dir/SST-2/train.tsv and dev.tsv.
func writeSynthGLUE(dir string, nTrain, nDev int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 11))
	err := atomicfile.WriteDir(filepath.Join(dir, "SST-2"), func(task string) error {
		for _, split := range []struct {
			name string
			n    int
		}{{"train", nTrain}, {"dev", nDev}} {
			var b strings.Builder
			b.WriteString("sentence\tlabel\n")
			for i := 0; i < split.n; i++ {
				s, l := synthSentence(rng)
				fmt.Fprintf(&b, "%s\t%d\n", s, l)
			}
			if err := atomicfile.WriteBytes(filepath.Join(task, split.name+".tsv"), []byte(b.String())); err != nil {
				return err
			}
		}
		return nil
	})
	return errors.Wrap(err, "writing the synthetic task")
}
