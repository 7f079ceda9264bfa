package glue

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// writeGLUE writes files (path relative to a GLUE dir → content) into a
// temporary GLUE directory and returns it.
func writeGLUE(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const (
	mrpcTrain = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" +
		"1\t702876\t702977\tAmrozi accused his brother , whom he called \" the witness \" , of deliberately distorting his evidence .\tReferring to him as only \" the witness \" , Amrozi accused his brother of deliberately distorting his evidence .\n" +
		"0\t2108705\t2108831\tYucaipa owned Dominick 's before selling the chain to Safeway in 1998 for $ 2.5 billion .\tYucaipa bought Dominick 's in 1995 for $ 693 million and sold it to Safeway for $ 1.8 billion in 1998 .\n"
	mrpcTest = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n" +
		"0\t1089874\t1089925\tPCCW 's chief operating officer , Mike Butcher , and Alex Arena , the chief financial officer , will report directly to Mr So .\tCurrent Chief Operating Officer Mike Butcher and Group Chief Financial Officer Alex Arena will report to So .\n"
	stsbHeader = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
	stsbTrain  = stsbHeader +
		"0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n" +
		"1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a large flute.\tA man is playing a flute.\t3.800\n" +
		"2\tmain-news\theadlines\t2013\t0049\tnone\tnone\t\"Obama \"calls\tNo \"quotes\" here\t0\n"
	stsbTest = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\n" +
		"0\tmain-news\theadlines\t2016\t0001\tnone\tnone\tA man is playing a guitar.\tA man plays the guitar.\n"
	qqpTrain = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n" +
		"133273\t213221\t213222\tHow is the life of a math student? Could you describe your own experiences?\tWhich level of prepration is enough for the exam jlpt5?\t0\n" +
		"402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control your horniness?\t1\n"
	qqpTest = "id\tquestion1\tquestion2\n" +
		"0\tWhy am I mentally very lonely? How can I solve it?\tFind the remainder when [math]23^{24}[/math] is divided by 24,23?\n"
	mnliDevHeader = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
	mnliMatched   = mnliDevHeader +
		"0\t63735\t63735n\tslate\t( ( The ( new rights ) ) ( are ( nice enough ) ) )\t( Everyone ( really ( likes ( the ( newest benefits ) ) ) ) )\t(ROOT (S (NP (DT The) (JJ new) (NNS rights)) (VP (VBP are) (ADJP (JJ nice) (RB enough)))))\t(ROOT (S (NP (NN Everyone)) (VP (ADVP (RB really)) (VBZ likes) (NP (DT the) (JJS newest) (NNS benefits)))))\tThe new rights are nice enough\tEveryone really likes the newest benefits \tneutral\tentailment\tneutral\tneutral\tneutral\tneutral\n" +
		"1\t91383\t91383c\tgovernment\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThis site includes a list of all award winners.\tThe Government Executive articles housed on the website are not able to be searched.\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\n"
	mnliMismatched = mnliDevHeader +
		"0\t75290\t75290c\tletters\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tYour contribution helped make it possible for us to provide our students with a quality education.\tYour contributions were of no help with our students' education.\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\n" +
		"1\t133794\t133794e\tverbatim\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe answer has nothing to do with their cause.\tThe answer is unrelated.\tentailment\tentailment\tentailment\tentailment\tneutral\tentailment\n"
	mnliTrain = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n" +
		"0\t31193\t31193n\tgovernment\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tConceptually cream skimming has two basic dimensions - product and geography.\tProduct and geography are what make cream skimming work. \tneutral\tneutral\n"
	mnliTest = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\n" +
		"0\t31193\t31193n\tgovernment\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tPremise.\tHypothesis.\n"
	wnliTrain = "index\tsentence1\tsentence2\tlabel\n" +
		"0\tI stuck a pin through a carrot. When I pulled the pin out, it had a hole.\tThe carrot had a hole.\t1\n" +
		"1\tJohn couldn't see the stage with Billy in front of him because he is so short.\tJohn is so short.\t1\n" +
		"2\tThe police arrested all of the gang members. They were trying to stop the drug trade in the neighborhood.\tThe police were trying to stop the drug trade in the neighborhood.\t1\n" +
		"3\tSteve follows Fred's example in everything. He influences him hugely.\tSteve influences him hugely.\t0\n"
	wnliTest = "index\tsentence1\tsentence2\n" +
		"0\tMaude and Dora had seen the trains rushing across the prairie.\tHorses ran away when Maude and Dora came into sight.\n"
)

func TestStandardFormats(t *testing.T) {
	dir := writeGLUE(t, map[string]string{
		"MRPC/train.tsv":           mrpcTrain,
		"MRPC/test.tsv":            mrpcTest,
		"STS-B/train.tsv":          stsbTrain,
		"STS-B/test.tsv":           stsbTest,
		"QQP/train.tsv":            qqpTrain,
		"QQP/test.tsv":             qqpTest,
		"MNLI/train.tsv":           mnliTrain,
		"MNLI/dev_matched.tsv":     mnliMatched,
		"MNLI/dev_mismatched.tsv":  mnliMismatched,
		"MNLI/test_mismatched.tsv": mnliTest,
		"WNLI/dev.tsv":             wnliTrain,
		"WNLI/test.tsv":            wnliTest,
		"RTE/test.tsv":             "index\tsentence1\tsentence2\n0\tMamma Mia.\tAbba.\n",
		"SST-2/test.tsv":           "index\tsentence\n0\tuneasy mishmash of styles and genres .\n",
		"QNLI/train.tsv":           "index\tquestion\tsentence\tlabel\n0\tWhen?\tThen.\tnot_entailment\n",
		"CoLA/train.tsv":           "gj04\t0\t*\tThe more we study verbs, the crazier they get get.\nx\t1\t\tsentence\n",
	})
	cases := []struct {
		task, split string
		want        []Example
	}{
		{"MRPC", "train", []Example{
			{ID: "702876-702977", TextA: "Amrozi accused his brother , whom he called \" the witness \" , of deliberately distorting his evidence .", TextB: "Referring to him as only \" the witness \" , Amrozi accused his brother of deliberately distorting his evidence .", Label: 1, Line: 2},
			{ID: "2108705-2108831", TextA: "Yucaipa owned Dominick 's before selling the chain to Safeway in 1998 for $ 2.5 billion .", TextB: "Yucaipa bought Dominick 's in 1995 for $ 693 million and sold it to Safeway for $ 1.8 billion in 1998 .", Label: 0, Line: 3},
		}},
		{"mrpc", "test", []Example{
			{ID: "0", TextA: "PCCW 's chief operating officer , Mike Butcher , and Alex Arena , the chief financial officer , will report directly to Mr So .", TextB: "Current Chief Operating Officer Mike Butcher and Group Chief Financial Officer Alex Arena will report to So .", Label: -1, Line: 2},
		}},
		{"sts-b", "train", []Example{
			{ID: "0", TextA: "A plane is taking off.", TextB: "An air plane is taking off.", Score: 5, Line: 2},
			{ID: "1", TextA: "A man is playing a large flute.", TextB: "A man is playing a flute.", Score: 3.8, Line: 3},
			{ID: "2", TextA: "\"Obama \"calls", TextB: "No \"quotes\" here", Score: 0, Line: 4},
		}},
		{"stsb", "test", []Example{
			{ID: "0", TextA: "A man is playing a guitar.", TextB: "A man plays the guitar.", Label: -1, Line: 2},
		}},
		{"QQP", "train", []Example{
			{ID: "133273", TextA: "How is the life of a math student? Could you describe your own experiences?", TextB: "Which level of prepration is enough for the exam jlpt5?", Label: 0, Line: 2},
			{ID: "402555", TextA: "How do I control my horny emotions?", TextB: "How do you control your horniness?", Label: 1, Line: 3},
		}},
		{"qqp", "test", []Example{
			{ID: "0", TextA: "Why am I mentally very lonely? How can I solve it?", TextB: "Find the remainder when [math]23^{24}[/math] is divided by 24,23?", Label: -1, Line: 2},
		}},
		{"mnli", "train", []Example{
			{ID: "0", TextA: "Conceptually cream skimming has two basic dimensions - product and geography.", TextB: "Product and geography are what make cream skimming work. ", Label: 1, Line: 2},
		}},
		{"mnli", "dev", []Example{
			{ID: "0", TextA: "The new rights are nice enough", TextB: "Everyone really likes the newest benefits ", Label: 1, Line: 2},
			{ID: "1", TextA: "This site includes a list of all award winners.", TextB: "The Government Executive articles housed on the website are not able to be searched.", Label: 2, Line: 3},
		}},
		{"MNLI", "dev_mismatched", []Example{
			{ID: "0", TextA: "Your contribution helped make it possible for us to provide our students with a quality education.", TextB: "Your contributions were of no help with our students' education.", Label: 2, Line: 2},
			{ID: "1", TextA: "The answer has nothing to do with their cause.", TextB: "The answer is unrelated.", Label: 0, Line: 3},
		}},
		{"mnli", "test_mismatched", []Example{
			{ID: "0", TextA: "Premise.", TextB: "Hypothesis.", Label: -1, Line: 2},
		}},
		{"WNLI", "dev", []Example{
			{ID: "0", TextA: "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.", TextB: "The carrot had a hole.", Label: 1, Line: 2},
			{ID: "1", TextA: "John couldn't see the stage with Billy in front of him because he is so short.", TextB: "John is so short.", Label: 1, Line: 3},
			{ID: "2", TextA: "The police arrested all of the gang members. They were trying to stop the drug trade in the neighborhood.", TextB: "The police were trying to stop the drug trade in the neighborhood.", Label: 1, Line: 4},
			{ID: "3", TextA: "Steve follows Fred's example in everything. He influences him hugely.", TextB: "Steve influences him hugely.", Label: 0, Line: 5},
		}},
		{"wnli", "test", []Example{
			{ID: "0", TextA: "Maude and Dora had seen the trains rushing across the prairie.", TextB: "Horses ran away when Maude and Dora came into sight.", Label: -1, Line: 2},
		}},
		{"rte", "test", []Example{{ID: "0", TextA: "Mamma Mia.", TextB: "Abba.", Label: -1, Line: 2}}},
		{"SST-2", "test", []Example{{ID: "0", TextA: "uneasy mishmash of styles and genres .", Label: -1, Line: 2}}},
		{"qnli", "train", []Example{{ID: "0", TextA: "When?", TextB: "Then.", Label: 1, Line: 2}}},
		// A header-less CoLA row whose sentence equals a column name is data.
		{"cola", "train", []Example{
			{ID: "0", TextA: "The more we study verbs, the crazier they get get.", Label: 0, Line: 1},
			{ID: "1", TextA: "sentence", Label: 1, Line: 2},
		}},
	}
	for _, c := range cases {
		t.Run(c.task+"/"+c.split, func(t *testing.T) {
			got, err := Load(dir, c.task, c.split)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, c.want)
			}
		})
	}
	if _, err := Load(dir, "mnli", "test"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mnli test (→ test_matched.tsv, absent): err = %v", err)
	}
}

func TestLineEndings(t *testing.T) {
	long := strings.Repeat("very ", 40000) + "long" // 200 KB, beyond any 64 KB scanner limit
	cases := map[string]string{
		"CRLF":             "sentence\tlabel\r\nfine .\t1\r\nbad .\t0\r\n",
		"no final newline": "sentence\tlabel\nfine .\t1\nbad .\t0",
		"CRLF, none final": "sentence\tlabel\r\nfine .\t1\r\nbad .\t0",
		"BOM":              "\ufeffsentence\tlabel\nfine .\t1\nbad .\t0\n",
	}
	for name, in := range cases {
		got, err := Parse(strings.NewReader(in), "sst2", name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := []Example{{ID: "0", TextA: "fine .", Label: 1, Line: 2}, {ID: "1", TextA: "bad .", Label: 0, Line: 3}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v", name, got)
		}
	}
	got, err := Parse(strings.NewReader("index\tsentence1\tsentence2\tlabel\r\n7\t"+long+"\tshort\tentailment\r\n8\ta\t"+long+"\tnot_entailment"), "rte", "long.tsv")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].TextA != long || got[1].TextB != long || got[1].Label != 1 || got[1].Line != 3 {
		t.Errorf("long lines misread: %d examples", len(got))
	}
	// A header-only file is valid and has no examples.
	if got, err := Parse(strings.NewReader("sentence\tlabel\n"), "sst2", "h.tsv"); err != nil || len(got) != 0 {
		t.Errorf("header only: %v, %v", got, err)
	}
}

// Quotes are text, never CSV quoting: an unbalanced quote does not swallow
// the following lines.
func TestQuotesAreText(t *testing.T) {
	in := "sentence\tlabel\n\" an opening quote\t1\nnext row \"\t0\n\"\"\"\t1\n"
	got, err := Parse(strings.NewReader(in), "sst2", "q.tsv")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`" an opening quote`, `next row "`, `"""`}
	if len(got) != 3 {
		t.Fatalf("%d examples, want 3", len(got))
	}
	for i, w := range want {
		if got[i].TextA != w {
			t.Errorf("row %d: %q, want %q", i, got[i].TextA, w)
		}
	}
}

// The documented rule for surplus fields: first field = first column, last
// field = label, surplus empty fields in between dropped.
func TestSurplusEmptyFields(t *testing.T) {
	in := "index\tsentence1\tsentence2\tlabel\n" +
		"0\t\"a\tb\t\tentailment\n" + // the RTE 2164 shape
		"1\t\ta\tb\tnot_entailment\n" + // empty field before sentence1
		"2\ta\t\t\tb\tentailment\n" // two empty fields in the middle
	got, err := Parse(strings.NewReader(in), "rte", "x.tsv")
	if err != nil {
		t.Fatal(err)
	}
	want := []Example{
		{ID: "0", TextA: `"a`, TextB: "b", Label: 0, Line: 2},
		{ID: "1", TextA: "a", TextB: "b", Label: 1, Line: 3},
		{ID: "2", TextA: "a", TextB: "b", Label: 0, Line: 4},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
}

func TestMalformed(t *testing.T) {
	rteH := "index\tsentence1\tsentence2\tlabel\n"
	cases := []struct {
		name, task, in string
		line           int
		msg            string // substring of the message
	}{
		{"empty file", "sst2", "", 1, "empty file"},
		{"no header", "sst2", "a fine film .\t1\n", 1, "not a sst2 header"},
		{"too many fields", "sst2", "sentence\tlabel\nok\t1\na\tb\t1\n", 3, "3 tab-separated fields, want 2"},
		{"too few fields", "rte", rteH + "0\ta\tb\tentailment\n1\ta\tentailment\n", 3, "3 tab-separated fields, want 4"},
		{"surplus non-empty field", "rte", rteH + "0\ta\tb\tc\tentailment\n", 2, "5 tab-separated fields, want 4"},
		{"surplus after label", "rte", rteH + "0\ta\tb\tentailment\t\n", 2, "5 tab-separated fields, want 4"},
		{"unknown label", "rte", rteH + "0\ta\tb\tEntailment\n", 2, "unknown rte label \"Entailment\""},
		{"unknown sst2 label", "sst2", "sentence\tlabel\nok\t1\nok\t2\n", 3, "unknown sst2 label \"2\""},
		{"empty label", "sst2", "sentence\tlabel\nok\t\n", 2, "unknown sst2 label \"\""},
		{"MNLI no gold label", "mnli", mnliDevHeader + "0\t1\t1n\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tA.\tB.\tneutral\tentailment\tcontradiction\tneutral\tentailment\t-\n", 2, "unknown mnli label \"-\""},
		{"empty text", "sst2", "sentence\tlabel\n\t1\n", 2, "empty text in column 1"},
		{"blank single text", "cola", "gj04\t1\t\t  \n", 1, "empty text in column 4"},
		{"both texts empty", "qqp", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n5\t1\t2\t \t\t0\n", 2, "both texts empty (columns 4 and 5)"},
		{"blank line", "sst2", "sentence\tlabel\nok\t1\n\nok\t0\n", 3, "blank line"},
		{"blank final line", "sst2", "sentence\tlabel\nok\t1\n\n", 3, "blank line"},
		{"score not a number", "stsb", stsbHeader + "0\tg\tf\ty\to\ts\ts\tA.\tB.\tfive\n", 2, "score \"five\" is not a number"},
		{"score too big", "stsb", stsbHeader + "0\tg\tf\ty\to\ts\ts\tA.\tB.\t5.2\n", 2, "outside [0, 5]"},
		{"score negative", "stsb", stsbHeader + "0\tg\tf\ty\to\ts\ts\tA.\tB.\t-0.5\n", 2, "outside [0, 5]"},
		{"score NaN", "stsb", stsbHeader + "0\tg\tf\ty\to\ts\ts\tA.\tB.\tNaN\n", 2, "outside [0, 5]"},
		{"score empty", "stsb", stsbHeader + "0\tg\tf\ty\to\ts\ts\tA.\tB.\t\n", 2, "not a number"},
		{"CoLA 3 fields", "cola", "gj04\t1\t\tGood.\ngj04\t1\tBad.\n", 2, "3 tab-separated fields, want 4"},
		{"CoLA bad label", "cola", "gj04\t1\t\tGood.\ngj04\t2\t\tBad.\n", 2, "unknown cola label \"2\""},
		{"CoLA first line", "cola", "gj04\t1\tGood.\n", 1, "neither a cola header"},
		{"duplicate column", "rte", "index\tsentence1\tsentence2\tlabel\tlabel\n", 1, "column \"label\" more than once"},
		{"label column misspelt", "mrpc", "\ufeff\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n", 1, `no mrpc label column "Quality" and an unknown column "\ufeffQuality"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.in), c.task, "dir/"+c.task+".tsv")
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *ParseError", err)
			}
			if pe.File != "dir/"+c.task+".tsv" || pe.Line != c.line || !strings.Contains(pe.Msg, c.msg) {
				t.Errorf("got %q (line %d), want line %d and %q", err, pe.Line, c.line, c.msg)
			}
			if prefix := "dir/" + c.task + ".tsv:" + strconv.Itoa(c.line) + ": "; !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := writeGLUE(t, map[string]string{
		"SST-2/dev.tsv": "sentence\tlabel\nok\t1\nbad\tx\n",
		"RTE/dev.tsv":   "index\tsentence1\tsentence2\n0\ta\tb\n", // a test file saved as dev
	})
	_, err := Load(dir, "sst2", "dev")
	want := filepath.Join(dir, "SST-2", "dev.tsv") + ":3: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want prefix %q", err, want)
	}
	_, err = Load(dir, "rte", "dev")
	if want := filepath.Join(dir, "RTE", "dev.tsv") + `:1: header has no rte label column "label"`; err == nil || err.Error() != want {
		t.Errorf("dev file without labels: err = %v, want %s", err, want)
	}
	if _, err := Load(dir, "sst2", "train"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
	if _, err := Load(dir, "squad", "dev"); err == nil {
		t.Error("unknown task: no error")
	}
	if _, err := Load(dir, "sst2", "dev_matched"); err == nil {
		t.Error("dev_matched of sst2: no error")
	}
	if _, err := Load(dir, "mnli", "validation"); err == nil {
		t.Error("unknown mnli split: no error")
	}
}

func TestRegistry(t *testing.T) {
	want := []string{"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
	dirs := []string{"CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"}
	tasks := Tasks()
	if len(tasks) != len(want) {
		t.Fatalf("%d tasks", len(tasks))
	}
	for i, task := range tasks {
		if task.Name != want[i] || task.Dir != dirs[i] {
			t.Errorf("task %d = %s in %s", i, task.Name, task.Dir)
		}
		for _, alias := range []string{task.Name, strings.ToUpper(task.Name), task.Dir} {
			got, err := Lookup(alias)
			if err != nil || got.Name != task.Name {
				t.Errorf("Lookup(%q) = %s, %v", alias, got.Name, err)
			}
		}
		if task.Regression() != (task.Name == "stsb") || len(task.Labels) != map[bool]int{true: 0, false: task.NumLabels}[task.Regression()] {
			t.Errorf("%s: NumLabels %d, Labels %q", task.Name, task.NumLabels, task.Labels)
		}
		found := false
		for _, m := range task.Metrics {
			found = found || m == task.Primary
		}
		if !found {
			t.Errorf("%s: primary %q not among %q", task.Name, task.Primary, task.Metrics)
		}
	}
	// Returned tasks are copies.
	tasks[0].Labels[0] = "changed"
	if c, _ := Lookup("cola"); c.Labels[0] != "0" {
		t.Error("registry was modified through a returned Task")
	}
	if _, err := Lookup("glue"); err == nil {
		t.Error("Lookup(glue): no error")
	}
}

// One empty text of a pair is data: real QQP has rows with an empty
// question, and RTE-style pairs read the same way.
func TestOneEmptyTextOfAPair(t *testing.T) {
	qqp := "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n5\t1\t2\tWhy?\t\t0\n6\t3\t4\t\tHow?\t1\n"
	ex, err := Parse(strings.NewReader(qqp), "qqp", "train.tsv")
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 2 || ex[0].TextA != "Why?" || ex[0].TextB != "" || ex[1].TextA != "" || ex[1].TextB != "How?" || ex[1].Label != 1 {
		t.Errorf("got %+v", ex)
	}
}
