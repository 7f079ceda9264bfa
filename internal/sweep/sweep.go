// Package sweep holds what the examples' sweep commands share: named run
// configurations given on the command line ("NAME: -flag value ..."), seed
// lists, folder names for runs, and the mean ± sample standard deviation
// that their tables report.
package sweep

import (
	"flag"
	"strconv"
	"strings"

	"github.com/pkg/errors"
	"gonum.org/v1/gonum/stat"
)

// Spec is one named configuration of a sweep: the flags its runs add to
// the sweep's shared flags.
type Spec struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
}

// ParseSpec reads "NAME: -flag value ..." (flags separated by spaces, no
// quoting).
func ParseSpec(v string) (Spec, error) {
	name, rest, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return Spec{}, errors.Errorf("run %q: write it as \"NAME: -flag value ...\"", v)
	}
	return Spec{Name: name, Args: strings.Fields(rest)}, nil
}

// Specs collects repeated -run flags; it is a flag.Value.
type Specs []Spec

// String lists the names.
func (s *Specs) String() string {
	var names []string
	for _, sp := range *s {
		names = append(names, sp.Name)
	}
	return strings.Join(names, "; ")
}

// Set parses and appends one "NAME: FLAGS".
func (s *Specs) Set(v string) error {
	sp, err := ParseSpec(v)
	if err != nil {
		return err
	}
	*s = append(*s, sp)
	return nil
}

// ParseSeeds reads a comma-separated list of distinct non-negative integer
// seeds; blanks are ignored, an empty list is an error.
func ParseSeeds(s string) ([]uint64, error) {
	var out []uint64
	seen := map[uint64]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, errors.Errorf("-seeds: %q is not a non-negative integer", f)
		}
		if seen[v] {
			return nil, errors.Errorf("-seeds names %d twice", v)
		}
		seen[v] = true
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("-seeds is empty; give at least one seed, e.g. 1,2,3")
	}
	return out, nil
}

// Slug turns a run name into a folder name: lower case, with every
// character other than a–z, 0–9, '.' and '_' replaced by '-'.
func Slug(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	return b.String()
}

// MeanStd returns the mean of v and its sample standard deviation (n − 1 in
// the denominator; 0 for a single value).
func MeanStd(v []float64) (mean, std float64) {
	if len(v) < 2 {
		return stat.Mean(v, nil), 0
	}
	return stat.MeanStdDev(v, nil)
}

// SharedArgs returns "-name=value" for every flag set on fs, in fs's order,
// except those named in own (the sweep's own flags); a set flag named in
// refused is an error with that message (e.g. "seed": "sweep takes -seeds
// (a list), not -seed").
func SharedArgs(fs *flag.FlagSet, own []string, refused map[string]string) ([]string, error) {
	skip := map[string]bool{}
	for _, n := range own {
		skip[n] = true
	}
	var shared []string
	var err error
	fs.Visit(func(f *flag.Flag) {
		switch msg, bad := refused[f.Name]; {
		case bad:
			if err == nil {
				err = errors.New(msg)
			}
		case !skip[f.Name]:
			shared = append(shared, "-"+f.Name+"="+f.Value.String())
		}
	})
	return shared, err
}

// ParseSpecs parses the lines of a default sweep.
func ParseSpecs(lines []string) (Specs, error) {
	var out Specs
	for _, l := range lines {
		sp, err := ParseSpec(l)
		if err != nil {
			return nil, err
		}
		out = append(out, sp)
	}
	return out, nil
}
