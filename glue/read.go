package glue

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Example is one row of a GLUE file.
type Example struct {
	// ID is the row's index (the "index" or, for QQP, "id" column). Files
	// without such a column get the row's zero-based position among the
	// data rows, or for MRPC train and dev "<#1 ID>-<#2 ID>".
	ID string
	// TextA is the first (or only) text; TextB the second text of a pair
	// task, empty otherwise. Both are exactly as in the file.
	TextA, TextB string
	// Label is the class index into Task.Labels, or -1 if the file has no
	// labels (GLUE test files). For STS-B it is 0 when the row has a score
	// and -1 when it has none.
	Label int
	// Score is the STS-B similarity score in [0, 5]; 0 for other tasks.
	Score float64
	// Line is the 1-based line number of the row in its file.
	Line int
}

// Labeled reports whether the example has a gold label (or score).
func (e Example) Labeled() bool { return e.Label >= 0 }

// ParseError is the error for a malformed line of a GLUE file.
type ParseError struct {
	File string // file name as given to Parse or the path used by Load
	Line int    // 1-based line number
	Msg  string // what is wrong
}

// Error returns "file:line: message".
func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Path returns the path of a task's split file below glueDir, for example
// Path("glue", "sst2", "dev") is "glue/SST-2/dev.tsv". See [Task.FileName]
// for the split names.
func Path(glueDir, task, split string) (string, error) {
	t, err := Lookup(task)
	if err != nil {
		return "", err
	}
	name, err := t.FileName(split)
	if err != nil {
		return "", err
	}
	return filepath.Join(glueDir, t.Dir, name), nil
}

// Load reads one split ("train", "dev", "test"; for MNLI also
// "dev_matched", "dev_mismatched", "test_matched", "test_mismatched") of a
// task from a standard GLUE directory. Errors in the file name it and the
// line; see [Parse].
func Load(glueDir, task, split string) ([]Example, error) {
	p, err := Path(glueDir, task, split)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("glue: %w", err)
	}
	defer f.Close()
	t, _ := Lookup(task)
	// GLUE train and dev files are labeled; only test files are not.
	needLabel := !strings.HasPrefix(strings.ToLower(split), "test")
	return parse(f, t, p, needLabel)
}

// Parse reads a GLUE task file from r. name is used in error messages
// (normally the file's path). The format is described in the package
// documentation; any malformed row makes Parse fail with a *[ParseError].
// Unlike [Load], Parse does not know the split, so it accepts a file
// without a label column (a test file) and returns unlabeled examples.
func Parse(r io.Reader, task, name string) ([]Example, error) {
	t, err := Lookup(task)
	if err != nil {
		return nil, err
	}
	return parse(r, t, name, false)
}

func parse(r io.Reader, t Task, name string, needLabel bool) ([]Example, error) {
	p := &parser{task: t, name: name, needLabel: needLabel, br: bufio.NewReaderSize(r, 64<<10)}
	return p.run()
}

type parser struct {
	task      Task
	name      string
	needLabel bool // a file without a label column is an error
	br        *bufio.Reader
	line      int

	n                int // number of columns
	a, b, label, id  int // column positions; -1 if absent
	id1, id2         int // MRPC "#1 ID", "#2 ID"; -1 if absent
	dropEmptyMiddles bool
	rows             int
}

func (p *parser) errorf(format string, args ...any) error {
	return &ParseError{File: p.name, Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// next returns the next line without its terminator ("\n" or "\r\n").
func (p *parser) next() (string, bool, error) {
	s, err := p.br.ReadString('\n')
	if err != nil && err != io.EOF {
		return "", false, fmt.Errorf("glue: reading %s after line %d: %w", p.name, p.line, err)
	}
	if err == io.EOF && s == "" {
		return "", false, nil
	}
	p.line++
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	return s, true, nil
}

func (p *parser) run() ([]Example, error) {
	first, ok, err := p.next()
	if err != nil {
		return nil, err
	}
	if !ok {
		p.line = 1
		return nil, p.errorf("empty file, want a %s file", p.task.Name)
	}
	first = strings.TrimPrefix(first, "\uFEFF")
	var out []Example
	if isHeader, err := p.header(first); err != nil {
		return nil, err
	} else if !isHeader {
		ex, err := p.row(first)
		if err != nil {
			return nil, err
		}
		out = append(out, ex)
	}
	for {
		s, ok, err := p.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		ex, err := p.row(s)
		if err != nil {
			return nil, err
		}
		out = append(out, ex)
	}
}

// header interprets the first line. It reports false if the line is a data
// row of a header-less format.
func (p *parser) header(s string) (bool, error) {
	c := p.task.cols
	fields := strings.Split(s, "\t")
	pos := map[string]int{}
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if _, dup := pos[f]; dup && f != "" {
			pos[f] = -2 // duplicate
			continue
		}
		pos[f] = i
	}
	find := func(name string) (int, error) {
		if name == "" {
			return -1, nil
		}
		i, ok := pos[name]
		if !ok {
			return -1, nil
		}
		if i == -2 {
			return -1, p.errorf("header has column %q more than once", name)
		}
		return i, nil
	}
	_, hasA := pos[c.a]
	_, hasB := pos[c.b]
	h := c.headless
	// A header-less data row whose label field is a valid label is data,
	// even if its text happens to equal a column name.
	dataRow := h != nil && len(fields) == h.n && p.task.labelIndex(strings.TrimSpace(fields[h.label])) >= 0
	if !hasA || (c.b != "" && !hasB) || dataRow {
		if h != nil && len(fields) == h.n {
			p.n, p.a, p.b, p.label, p.id, p.id1, p.id2 = h.n, h.a, -1, h.label, -1, -1, -1
			return false, nil
		}
		want := fmt.Sprintf("%q", c.a)
		if c.b != "" {
			want += fmt.Sprintf(" and %q", c.b)
		}
		if c.headless != nil {
			return false, p.errorf("neither a %s header (columns %s) nor a %d-column header-less row: %d fields", p.task.Name, want, c.headless.n, len(fields))
		}
		return false, p.errorf("not a %s header: want columns %s, got %q", p.task.Name, want, clip(s))
	}
	var err error
	p.n = len(fields)
	if p.a, err = find(c.a); err != nil {
		return false, err
	}
	if p.b, err = find(c.b); err != nil {
		return false, err
	}
	if p.label, err = find(c.label); err != nil {
		return false, err
	}
	p.id = -1
	for _, name := range c.ids {
		if p.id, err = find(name); err != nil {
			return false, err
		}
		if p.id >= 0 {
			break
		}
	}
	if p.id1, err = find(c.idPair[0]); err != nil {
		return false, err
	}
	if p.id2, err = find(c.idPair[1]); err != nil {
		return false, err
	}
	if p.label < 0 {
		if p.needLabel {
			return false, p.errorf("header has no %s label column %q", p.task.Name, c.label)
		}
		// Without a label column the file is a test file; its columns must
		// all be known, so that a misspelt label column is not mistaken
		// for an absent one.
		known := map[string]bool{c.a: true, c.b: true, c.idPair[0]: true, c.idPair[1]: true}
		for _, names := range [][]string{c.ids, c.other} {
			for _, name := range names {
				known[name] = true
			}
		}
		for _, f := range fields {
			if !known[strings.TrimSpace(f)] {
				return false, p.errorf("header has no %s label column %q and an unknown column %q", p.task.Name, c.label, clip(f))
			}
		}
	}
	p.dropEmptyMiddles = p.label >= 0 && p.label == p.n-1 && p.n >= 2
	return true, nil
}

// fields splits a data line and resolves a field count that differs from
// the header's by the documented rule.
func (p *parser) fields(s string) ([]string, error) {
	f := strings.Split(s, "\t")
	if len(f) == p.n {
		return f, nil
	}
	if s == "" {
		return nil, p.errorf("blank line, want %d tab-separated fields", p.n)
	}
	if p.dropEmptyMiddles && len(f) > p.n {
		// First field is the first column, last field the label; surplus
		// fields in between must be empty.
		mid := make([]string, 0, p.n)
		mid = append(mid, f[0])
		for _, m := range f[1 : len(f)-1] {
			if m != "" {
				mid = append(mid, m)
			}
		}
		if len(mid) == p.n-1 {
			return append(mid, f[len(f)-1]), nil
		}
	}
	return nil, p.errorf("%d tab-separated fields, want %d", len(f), p.n)
}

func (p *parser) row(s string) (Example, error) {
	f, err := p.fields(s)
	if err != nil {
		return Example{}, err
	}
	t := p.task
	ex := Example{Line: p.line, Label: -1, TextA: f[p.a]}
	blankA := strings.TrimSpace(ex.TextA) == ""
	if p.b < 0 && blankA {
		return Example{}, p.errorf("empty text in column %d", p.a+1)
	}
	if p.b >= 0 {
		// One empty text of a pair is data (real QQP has empty questions,
		// which Hugging Face's run_glue tokenizes as empty); two are not.
		ex.TextB = f[p.b]
		if blankA && strings.TrimSpace(ex.TextB) == "" {
			return Example{}, p.errorf("both texts empty (columns %d and %d)", p.a+1, p.b+1)
		}
	}
	switch {
	case p.id >= 0:
		ex.ID = f[p.id]
	case p.id1 >= 0 && p.id2 >= 0:
		ex.ID = f[p.id1] + "-" + f[p.id2]
	default:
		ex.ID = strconv.Itoa(p.rows)
	}
	if p.label >= 0 {
		v := strings.TrimSpace(f[p.label])
		if t.Regression() {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return Example{}, p.errorf("score %q is not a number", v)
			}
			if math.IsNaN(x) || x < 0 || x > 5 {
				return Example{}, p.errorf("score %q is outside [0, 5]", v)
			}
			ex.Score, ex.Label = x, 0
		} else {
			if ex.Label = t.labelIndex(v); ex.Label < 0 {
				return Example{}, p.errorf("unknown %s label %q (want one of %q)", t.Name, v, t.Labels)
			}
		}
	}
	p.rows++
	return ex, nil
}

// labelIndex returns the class index of a label string, or -1.
func (t Task) labelIndex(v string) int {
	for i, l := range t.Labels {
		if v == l {
			return i
		}
	}
	return -1
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
