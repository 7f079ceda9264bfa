package sweep

import (
	"flag"
	"math"
	"reflect"
	"testing"
)

func TestParseSpec(t *testing.T) {
	sp, err := ParseSpec(" lily r8 : -adapter lily  -lily_r 8 ")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Spec{Name: "lily r8", Args: []string{"-adapter", "lily", "-lily_r", "8"}}); !reflect.DeepEqual(sp, want) {
		t.Errorf("got %+v, want %+v", sp, want)
	}
	for _, bad := range []string{"no colon", ": -adapter lily", "  : x"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) accepted", bad)
		}
	}
}

func TestSpecsIsAFlag(t *testing.T) {
	var s Specs
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Var(&s, "run", "")
	if err := fs.Parse([]string{"-run", "a: -x 1", "-run", "b:"}); err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || s[0].Name != "a" || s[1].Name != "b" || len(s[1].Args) != 0 || s.String() != "a; b" {
		t.Errorf("got %+v (%q)", s, s.String())
	}
	if err := fs.Parse([]string{"-run", "nameless"}); err == nil {
		t.Error("a run without a colon was accepted")
	}
}

func TestParseSeeds(t *testing.T) {
	got, err := ParseSeeds(" 3, 1,,2 ")
	if err != nil || !reflect.DeepEqual(got, []uint64{3, 1, 2}) {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", " , ", "1,x", "-1", "1,2,1"} {
		if _, err := ParseSeeds(bad); err == nil {
			t.Errorf("ParseSeeds(%q) accepted", bad)
		}
	}
}

func TestSlug(t *testing.T) {
	if got := Slug("Lily r13 (sequence)/x_1.5"); got != "lily-r13--sequence--x_1.5" {
		t.Errorf("got %q", got)
	}
}

// MeanStd against values computed by hand: mean 2.5 and sample variance
// ((1.5² + 0.5²)·2)/3 = 5/3 for 1, 2, 3, 4.
func TestMeanStd(t *testing.T) {
	m, s := MeanStd([]float64{1, 2, 3, 4})
	if m != 2.5 || math.Abs(s-math.Sqrt(5.0/3)) > 1e-15 {
		t.Errorf("got %v ± %v", m, s)
	}
	if m, s := MeanStd([]float64{7}); m != 7 || s != 0 {
		t.Errorf("one value: got %v ± %v", m, s)
	}
}

func TestSharedArgs(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Int("max_steps", 0, "")
	fs.String("adapter", "lily", "")
	fs.String("seeds", "", "")
	fs.Int("seed", 0, "")
	if err := fs.Parse([]string{"-seeds", "1,2", "-max_steps", "7", "-adapter", "lora"}); err != nil {
		t.Fatal(err)
	}
	got, err := SharedArgs(fs, []string{"seeds"}, map[string]string{"seed": "use -seeds"})
	if err != nil || !reflect.DeepEqual(got, []string{"-adapter=lora", "-max_steps=7"}) {
		t.Errorf("got %v, %v", got, err)
	}
	if err := fs.Parse([]string{"-seed", "3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := SharedArgs(fs, []string{"seeds"}, map[string]string{"seed": "use -seeds"}); err == nil || err.Error() != "use -seeds" {
		t.Errorf("refused flag: %v", err)
	}
}

func TestParseSpecs(t *testing.T) {
	s, err := ParseSpecs([]string{"a: -x 1", "b:"})
	if err != nil || len(s) != 2 || s[1].Name != "b" {
		t.Errorf("got %+v, %v", s, err)
	}
	if _, err := ParseSpecs([]string{"a: -x", "nameless"}); err == nil {
		t.Error("a bad line was accepted")
	}
}
