package glue

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// glueDir returns the shared GLUE data folder, skipping the test when it
// is missing, or failing it when CI=true.
func glueDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "data", "glue")
	if _, err := os.Stat(filepath.Join(dir, "SST-2", "dev.tsv")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("GLUE data missing (CI=true): %v", err)
		}
		t.Skipf("GLUE data missing: %v", err)
	}
	return dir
}

func TestRealData(t *testing.T) {
	dir := glueDir(t)
	cases := []struct {
		task, split string
		rows        int
		perLabel    []int // gold count per class index; nil: unlabeled
	}{
		{"sst2", "train", 67349, []int{29780, 37569}},
		{"sst2", "dev", 872, []int{428, 444}},
		{"rte", "train", 2490, []int{1249, 1241}},
		{"rte", "dev", 277, []int{146, 131}},
		{"cola", "train", 8551, []int{2528, 6023}},
		{"cola", "dev", 1043, []int{322, 721}},
		{"cola", "test", 1063, nil},
		{"qnli", "dev", 5463, []int{2702, 2761}},
		{"qnli", "test", 5463, nil},
	}
	for _, c := range cases {
		t.Run(c.task+"/"+c.split, func(t *testing.T) {
			exs, err := Load(dir, c.task, c.split)
			if err != nil {
				t.Fatal(err)
			}
			if len(exs) != c.rows {
				t.Fatalf("%d rows, want %d", len(exs), c.rows)
			}
			task, _ := Lookup(c.task)
			counts := make([]int, task.NumLabels)
			ids := map[string]bool{}
			for i, e := range exs {
				if c.perLabel == nil {
					if e.Label != -1 {
						t.Fatalf("row %d: label %d in a test file", i, e.Label)
					}
				} else {
					counts[e.Label]++
				}
				if e.TextA == "" || task.Pair != (e.TextB != "") {
					t.Fatalf("row %d: texts %q / %q", i, e.TextA, e.TextB)
				}
				if !utf8.ValidString(e.TextA) || !utf8.ValidString(e.TextB) {
					t.Fatalf("row %d: invalid UTF-8", i)
				}
				if strings.ContainsAny(e.TextA+e.TextB, "\t\r\n") {
					t.Fatalf("row %d: text contains a tab or line break", i)
				}
				if ids[e.ID] {
					t.Fatalf("row %d: duplicate ID %q", i, e.ID)
				}
				ids[e.ID] = true
				// Every data set here has one row per line after its header
				// (CoLA train/dev have none).
				want := i + 2
				if c.task == "cola" && c.split != "test" {
					want = i + 1
				}
				if e.Line != want {
					t.Fatalf("row %d on line %d, want %d", i, e.Line, want)
				}
			}
			if c.perLabel != nil {
				for k := range counts {
					if counts[k] != c.perLabel[k] {
						t.Errorf("label %q: %d rows, want %d", task.Labels[k], counts[k], c.perLabel[k])
					}
				}
			}
		})
	}
}

func TestRealDataSpotChecks(t *testing.T) {
	dir := glueDir(t)

	rte, err := Load(dir, "RTE", "train")
	if err != nil {
		t.Fatal(err)
	}
	// Index 2164 is the row with five fields: an unbalanced quote opening
	// sentence1, quotes inside sentence2, and an empty field before the label.
	e := rte[2164]
	want := Example{
		ID:    "2164",
		TextA: `"That film wasn't too successful, but then 'WarGames,' which was successful, came out right when I won the Tony for 'Brighton Beach' in 1983.`,
		TextB: `The film "WarGames" was shot in 1983.`,
		Label: 1, // not_entailment
		Line:  2166,
	}
	if e != want {
		t.Errorf("RTE train 2164:\n got %+v\nwant %+v", e, want)
	}
	// Its neighbours are unaffected.
	if rte[2163].ID != "2163" || rte[2165].ID != "2165" {
		t.Errorf("neighbours of 2164: IDs %q, %q", rte[2163].ID, rte[2165].ID)
	}
	for i, e := range rte {
		if e.ID != strconv.Itoa(i) {
			t.Fatalf("RTE train row %d has ID %q", i, e.ID)
		}
	}

	sst, err := Load(dir, "SST-2", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Example{ID: "0", TextA: "it 's a charming and often affecting journey . ", Label: 1, Line: 2}); sst[0] != want {
		t.Errorf("SST-2 dev[0] = %+v, want %+v", sst[0], want)
	}

	cola, err := Load(dir, "cola", "dev")
	if err != nil {
		t.Fatal(err)
	}
	// The file ends without a newline.
	if last := cola[len(cola)-1]; last.TextA != "John talked to Bill about himself." || last.Label != 1 || last.Line != 1043 {
		t.Errorf("CoLA dev last row = %+v", last)
	}
	colaTest, err := Load(dir, "cola", "test")
	if err != nil {
		t.Fatal(err)
	}
	if e := colaTest[0]; e.ID != "0" || e.TextA != "Bill whistled past the house." || e.Label != -1 {
		t.Errorf("CoLA test[0] = %+v", e)
	}

	qnli, err := Load(dir, "qnli", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if e := qnli[0]; e.TextA != "What came into force after the new constitution was herald?" ||
		!strings.HasPrefix(e.TextB, "As of that day") || e.Label != 0 {
		t.Errorf("QNLI dev[0] = %+v", e)
	}
}
