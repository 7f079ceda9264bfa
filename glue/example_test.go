package glue_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/lilygo/lily/glue"
)

// Reading an MRPC file (header with a UTF-8 BOM) and scoring predictions.
func Example() {
	const mrpc = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" +
		"1\t702876\t702977\tAmrozi accused his brother .\tAmrozi accused his brother of distorting evidence .\n" +
		"0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought Dominick 's in 1995 .\n" +
		"1\t1330381\t1330521\tThey had published an advertisement .\tThey published an advertisement .\n" +
		"0\t3344667\t3344648\tThe stock rose .\tThe stock \"fell\" .\n"
	exs, err := glue.Parse(strings.NewReader(mrpc), "MRPC", "train.tsv")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(exs), "examples; first:", exs[0].ID, exs[0].Label)

	golds, _ := glue.Golds("mrpc", exs)
	preds := []float64{1, 1, 0, 0}
	m, _ := glue.Evaluate("mrpc", preds, golds)
	task, _ := glue.Lookup("mrpc")
	fmt.Printf("accuracy %.2f f1 %.2f primary %s = %.2f\n", m["accuracy"], m["f1"], task.Primary, m[task.Primary])

	// A malformed row is an error naming the file and line.
	_, err = glue.Parse(strings.NewReader("sentence\tlabel\ngood .\t1\nbad .\tpositive\n"), "sst2", "sst.tsv")
	fmt.Println(err)
	// Output:
	// 4 examples; first: 702876-702977 1
	// accuracy 0.50 f1 0.50 primary acc_and_f1 = 0.50
	// sst.tsv:3: unknown sst2 label "positive" (want one of ["0" "1"])
}

// Splitting the QNLI dev set, the only labeled QNLI split in the shared
// data, into a training and an evaluation part.
func ExampleSplit() {
	exs := make([]glue.Example, 10)
	for i := range exs {
		exs[i] = glue.Example{ID: fmt.Sprint(i), TextA: "q", TextB: "s", Label: i % 2}
	}
	train, eval, _ := glue.Split(exs, 0.8, 1)
	fmt.Println(len(train), len(eval))
	// Output: 8 2
}

// Writing predictions as a GLUE submission file: RTE's labels are strings.
func ExampleWriteSubmission() {
	task, _ := glue.Lookup("rte")
	test, _ := glue.Parse(strings.NewReader("index\tsentence1\tsentence2\n0\tIt rains.\tIt is wet.\n1\tA cat.\tA dog.\n"), "rte", "test.tsv")
	name, _ := task.SubmissionFile("test")
	fmt.Println(name)
	_ = glue.WriteSubmission(os.Stdout, task, test, []float64{0, 1})
	// Output:
	// RTE.tsv
	// index	prediction
	// 0	entailment
	// 1	not_entailment
}

// Classifying your own text: JSONL in, a prediction with the label strings'
// probabilities out (here from made-up logits).
func ExampleTask_Predict() {
	task, _ := glue.Lookup("rte")
	in := `{"sentence1": "A man is sleeping.", "sentence2": "A man is awake.", "id": 7}` + "\n"
	exs, err := glue.ParseJSONL(strings.NewReader(in), "rte", "mine.jsonl")
	if err != nil {
		fmt.Println(err)
		return
	}
	p, _ := task.Predict(exs[0], []float64{-1, 1}) // logits of entailment, not_entailment
	fmt.Printf("%s: %s (%.3f)\n", p.ID, p.Label, p.Probabilities[p.Label])
	_ = glue.WritePredictions(os.Stdout, []glue.Prediction{p})
	// Output:
	// 7: not_entailment (0.881)
	// {"id":"7","text":"A man is sleeping.","text_pair":"A man is awake.","label":"not_entailment","probabilities":{"entailment":0.11920292202211755,"not_entailment":0.8807970779778823}}
}
