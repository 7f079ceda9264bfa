package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// taskFile is written next to a fine-tuned adapter and into an exported
// model: the task its head was trained for and the settings under which the
// run evaluated it. PEFT reads only adapter_config.json and the weights, so
// the file does not disturb it.
const taskFile = "glue_task.json"

// noAdapter is the -adapter value for a model with its own classification
// head (an exported one).
const noAdapter = "none"

// taskRecord is taskFile.
type taskRecord struct {
	Task      string   `json:"task"`
	Labels    []string `json:"labels,omitempty"` // label strings in class order; none for STS-B
	NumLabels int      `json:"num_labels"`
	MaxLen    int      `json:"max_len"`
	BatchSize int      `json:"batch_size"` // the evaluation's: with batch routing, Lily's mixing depends on the batches
	Seed      uint64   `json:"seed"`       // the seed of the dev split of a task without train.tsv
	EvalSplit string   `json:"eval_split"`
	Model     string   `json:"base_model"`
	// ModelSHA256 is the SHA-256 of the base model's model.safetensors, so
	// that an adapter given another model of the same shapes is refused.
	ModelSHA256 string `json:"base_model_sha256,omitempty"`
}

// weightsHash returns the hex SHA-256 of the model.safetensors in dir.
func weightsHash(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, roberta.WeightsFile))
	if err != nil {
		return "", errors.Wrap(err, "hashing the model's weights")
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", errors.Wrapf(err, "hashing %s", f.Name())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// write saves the record to dir/taskFile atomically.
func (r taskRecord) write(dir string) error {
	return train.WriteJSON(filepath.Join(dir, taskFile), r)
}

// readTaskRecord reads dir/taskFile; ok is false when dir has none (an
// adapter trained elsewhere, e.g. by PEFT).
func readTaskRecord(dir string) (r taskRecord, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, taskFile))
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, errors.Wrap(err, "reading the task record")
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, false, errors.Wrapf(err, "parsing %s", filepath.Join(dir, taskFile))
	}
	return r, true, nil
}

// useConfig is the configuration of eval, predict and export: a trained
// model and what to run it on.
type useConfig struct {
	Mode      string `json:"mode"` // eval, predict or export
	Model     string `json:"model"`
	Adapter   string `json:"adapter"`
	Task      string `json:"task"`
	GlueDir   string `json:"glue_dir"`
	BatchSize int    `json:"batch_size"`
	MaxLen    int    `json:"max_len"`
	Seed      uint64 `json:"seed"`
	Out       string `json:"out"`
	Input     string `json:"input,omitempty"`

	Calibrate         bool `json:"calibrate,omitempty"`
	CalibrateExamples int  `json:"calibrate_examples,omitempty"`
	Overwrite         bool `json:"-"`

	seedSet bool // -seed was given; otherwise the task record's applies
}

// useDefaultBatch is -batch_size when neither the flag nor a task record
// gives one.
const useDefaultBatch = 32

// useUsage explains eval, predict and export; -h prints it above the flags.
var useUsage = map[string]string{
	"eval": `roberta-glue eval: the GLUE metrics of a fine-tuned model on the task's dev split.

  go run ./examples/roberta-glue eval -model DIR -adapter RUN/adapter -glue_dir ../shared/data/glue

The task, max_len, batch size and seed default to the fine-tuning run's (in
the adapter's glue_task.json), so the printed metrics are exactly the run's
best. -adapter none evaluates a model with its own head (from 'export').
-out FILE also writes the metrics as JSON.

`,
	"predict": `roberta-glue predict: predictions of a fine-tuned model.

  go run ./examples/roberta-glue predict -model DIR -adapter RUN/adapter -glue_dir G -out SUBMIT
      The task's test split as a GLUE submission file in SUBMIT (SST-2.tsv,
      RTE.tsv, ...; for MNLI MNLI-m.tsv, MNLI-mm.tsv and, when
      G/diagnostic/diagnostic.tsv exists, AX.tsv), header index<TAB>prediction,
      labels as the GLUE server expects them. The folder keeps other tasks'
      files, so one SUBMIT collects all nine: for gluebenchmark.com, zip its
      .tsv files (not the run record, lily_run.json).
  go run ./examples/roberta-glue predict -model DIR -adapter RUN/adapter -input FILE [-out FILE.jsonl]
      Your own text: FILE is a TSV with the task's columns (as its GLUE
      files), a .jsonl file with one object per line ("sentence", or
      "sentence1" and "sentence2", or "text" and "text_pair"), or - for
      standard input, one example per line (a pair's two texts separated by a
      tab). Writes JSON Lines with the label and the class probabilities (for
      STS-B the score) to -out, or to standard output.

`,
	"export": `roberta-glue export: the fine-tuned model with its adapter merged into the
weights, as a Hugging Face RobertaForSequenceClassification directory
(config.json with the task's labels, model.safetensors, vocab.json,
merges.txt) that 'eval', 'predict' and PyTorch use with no adapter.

  go run ./examples/roberta-glue export -model DIR -adapter RUN/adapter -glue_dir G -out MERGED

LoRA merges exactly. A Lily adapter routes every input to its own mixture of
experts, which no single weight matrix can reproduce: -calibrate freezes each
site's mixing at its mean over the task's training data (MixingCalibrator)
and merges that. With -glue_dir the export reports the largest |Δ logit| of
the merged model against the adapter on the dev split.

`,
}

// parseUse parses the flags of eval, predict or export.
func parseUse(mode string, args []string, out io.Writer) (useConfig, error) {
	c := useConfig{Mode: mode, CalibrateExamples: 2000}
	fs := flag.NewFlagSet("roberta-glue "+mode, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Model, "model", "", "Hugging Face RoBERTa directory the adapter was trained on (required); with -adapter none one with a classification head")
	fs.StringVar(&c.Adapter, "adapter", "", "adapter directory of a fine-tuning run (its -out/adapter), a PEFT adapter directory, or none (required)")
	fs.StringVar(&c.Task, "task", "", "GLUE task (default: the one in the adapter's glue_task.json; required for adapters without it)")
	fs.StringVar(&c.GlueDir, "glue_dir", "", "GLUE directory with <TASK>/dev.tsv and test.tsv")
	fs.IntVar(&c.BatchSize, "batch_size", 0, "examples per batch (default: the fine-tuning run's, else 32); Lily's batch routing depends on it")
	fs.IntVar(&c.MaxLen, "max_len", 0, "longest tokenized example (default: the fine-tuning run's, else 128 or the model's limit)")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed of the dev split of a task without train.tsv (default: the fine-tuning run's)")
	switch mode {
	case "eval":
		fs.StringVar(&c.Out, "out", "", "also write the metrics to this JSON file")
	case "predict":
		fs.StringVar(&c.Input, "input", "", "your own examples: a TSV file with the task's columns, a .jsonl file, or - for standard input")
		fs.StringVar(&c.Out, "out", "", "submission folder (required without -input); with -input the JSONL file (default: standard output)")
		fs.BoolVar(&c.Overwrite, "overwrite", false, "replace the -out folder when it holds a finished run or another kind of run")
	case "export":
		fs.StringVar(&c.Out, "out", "", "folder for the merged model (required)")
		fs.BoolVar(&c.Overwrite, "overwrite", false, "replace -out when it holds a finished run or another kind of run")
		fs.BoolVar(&c.Calibrate, "calibrate", false, "Lily: freeze each site's mixing at its mean over the task's training data, so that it can be merged")
		fs.IntVar(&c.CalibrateExamples, "calibrate_examples", c.CalibrateExamples, "Lily with -calibrate: training examples to average the mixing over, evenly spaced (0: all)")
	}
	fs.Usage = func() {
		fmt.Fprint(out, useUsage[mode])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, errors.Errorf("%s: unexpected argument %q (flags start with -)", mode, fs.Arg(0))
	}
	switch {
	case c.Model == "":
		return c, errors.Errorf("%s: -model is required: the RoBERTa directory the adapter was fine-tuned on", mode)
	case c.Adapter == "":
		return c, errors.Errorf("%s: -adapter is required: the adapter folder of a fine-tuning run (its -out/adapter), or none for a model with its own head", mode)
	case c.BatchSize < 0 || c.MaxLen < 0 || c.CalibrateExamples < 0:
		return c, errors.Errorf("%s: -batch_size %d, -max_len %d and -calibrate_examples %d must not be negative", mode, c.BatchSize, c.MaxLen, c.CalibrateExamples)
	case c.MaxLen != 0 && c.MaxLen < 8:
		return c, errors.Errorf("%s: -max_len %d is too short; use at least 8", mode, c.MaxLen)
	case mode == "eval" && c.GlueDir == "":
		return c, errors.New("eval: -glue_dir is required: the GLUE folder whose dev split to evaluate on")
	case mode == "predict" && c.Input == "" && (c.GlueDir == "" || c.Out == ""):
		return c, errors.New("predict: give -glue_dir and -out for the test split's submission file, or -input FILE for your own examples")
	case mode == "export" && c.Out == "":
		return c, errors.New("export: -out is required: the folder for the merged model")
	case c.Calibrate && c.GlueDir == "":
		return c, errors.New("export: -calibrate needs -glue_dir: the mixing is averaged over the task's training data")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.seedSet = set["seed"]
	return c, nil
}

// folder is the -out folder of predict (without -input) or export.
func (c useConfig) folder() outdir.Folder {
	kind := kindPredict
	if c.Mode == "export" {
		kind = kindExport
	}
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kind, Overwrite: c.Overwrite}
}

// checkOut validates -out before any work: a folder for predict's
// submission files and for export, a file for eval and for predict -input.
func (c useConfig) checkOut() error {
	switch {
	case c.Out == "" || c.Out == stdio && c.Input != "":
		return nil
	case c.Mode == "eval" || c.Input != "":
		return outdir.CheckFile("-out", c.Out)
	}
	return c.folder().Check()
}

// trained is a fine-tuned model ready to run: encoder, adapter and head.
type trained struct {
	c    useConfig // with task, batch size, max_len and seed resolved
	task glue.Task
	rec  taskRecord // the fine-tuning run's record; zero when there is none
	ck   *roberta.Checkpoint
	tok  *bytebpe.Tokenizer
	sm   *seqModel
}

// loadTrained loads the model and the adapter (or, with -adapter none, the
// model's own head) and resolves the task and the evaluation settings from
// the flags and the task record. An adapter for another task or model is an
// error naming both.
func loadTrained(c useConfig) (*trained, error) {
	if err := c.checkOut(); err != nil {
		return nil, err
	}
	recDir := c.Adapter
	if c.Adapter == noAdapter {
		recDir = c.Model
	}
	rec, hasRec, err := readTaskRecord(recDir)
	if err != nil {
		return nil, err
	}
	if c.Task == "" && !hasRec {
		return nil, errors.Errorf("%s has no %s; give -task (the GLUE task its head was trained for)", recDir, taskFile)
	}
	name := c.Task
	if name == "" {
		name = rec.Task
	}
	task, err := glue.Lookup(name)
	if err != nil {
		return nil, err
	}
	if hasRec && rec.Task != task.Name {
		return nil, errors.Errorf("%s was fine-tuned on %s, not %s: give the adapter of a %s run, or -task %s", recDir, rec.Task, task.Name, task.Name, rec.Task)
	}
	c.Task = task.Name
	if hasRec && rec.ModelSHA256 != "" && c.Adapter != noAdapter {
		sum, err := weightsHash(c.Model)
		if err != nil {
			return nil, err
		}
		if sum != rec.ModelSHA256 {
			return nil, errors.Errorf("the adapter in %s was fine-tuned on another model than %s (its %s has SHA-256 %.12s…, the adapter's base %s had %.12s…): give the -model it was trained on",
				c.Adapter, c.Model, roberta.WeightsFile, sum, rec.Model, rec.ModelSHA256)
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = max(rec.BatchSize, 0)
		if c.BatchSize == 0 {
			c.BatchSize = useDefaultBatch
		}
	}
	if c.MaxLen == 0 {
		c.MaxLen = rec.MaxLen
	}
	if !c.seedSet {
		c.Seed = rec.Seed
	}
	t := &trained{c: c, task: task, rec: rec}
	if t.ck, t.tok, err = loadEncoder(c.Model, c.Adapter == noAdapter); err != nil {
		if c.Adapter == noAdapter && strings.Contains(err.Error(), "no classification head") {
			return nil, errors.Errorf("%s has no classification head: -adapter none needs a model from 'export'; give the adapter of a fine-tuning run instead", c.Model)
		}
		return nil, err
	}
	if t.c.MaxLen == 0 {
		t.c.MaxLen = min(defaultMaxLen, t.ck.Config.MaxSeqLen())
	}
	if t.c.MaxLen > t.ck.Config.MaxSeqLen() {
		return nil, errors.Errorf("-max_len %d exceeds the %d positions of the model in %s", t.c.MaxLen, t.ck.Config.MaxSeqLen(), c.Model)
	}
	if err := useNeed(t.ck.Config, t.c.BatchSize, t.c.MaxLen).Check(); err != nil {
		return nil, errors.Wrapf(err, "-batch_size %d and -max_len %d", t.c.BatchSize, t.c.MaxLen)
	}
	if err := t.attach(); err != nil {
		return nil, err
	}
	return t, nil
}

// attach freezes the encoder and loads the adapter and head into the store,
// or checks the model's own head, and builds the sequence model.
func (t *trained) attach() error {
	ck, task := t.ck, t.task
	ck.Store.Freeze()
	var ad layers.Adapter = layers.None{}
	if t.c.Adapter == noAdapter {
		if ck.NumLabels != task.NumLabels {
			return errors.Errorf("the head of %s has %d outputs, %s needs %d: the model was trained for another task", t.c.Model, ck.NumLabels, task.Name, task.NumLabels)
		}
	} else {
		if err := roberta.AddClassifier(ck.Store, ck.Config, task.NumLabels, 0); err != nil {
			return err
		}
		if err := checkHeadSaved(t.c.Adapter, ck); err != nil {
			return err
		}
		var err error
		if ad, err = adapterfile.Load(t.c.Adapter, ck.Store, ck.Config.Sites()); err != nil {
			return errors.Wrapf(oneLine(err), "the adapter in %s does not fit the %s head on %s", t.c.Adapter, task.Name, t.c.Model)
		}
	}
	t.sm = &seqModel{cfg: ck.Config, store: ck.Store, adapter: ad, regression: task.Regression(), pad: ck.Config.PadTokenID,
		graphs: newGraphCache(cachedGraphs * t.c.BatchSize * t.c.MaxLen)}
	return nil
}

// checkHeadSaved fails unless the adapter file holds every tensor of the
// classification head: without them the head would be random.
func checkHeadSaved(dir string, ck *roberta.Checkpoint) error {
	f, err := tensorfile.Open(filepath.Join(dir, adapterfile.WeightsName))
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, k := range f.Names() {
		have[k] = true
	}
	for _, p := range ck.Store.Trainable() {
		if strings.HasPrefix(p.Name, headPrefix) && !have[adapterfile.Prefix+p.Name] {
			return errors.Errorf("%s holds no classification head (%s): save it with the adapter (PEFT: modules_to_save=[\"classifier\"], task_type SEQ_CLS)", dir, adapterfile.Prefix+p.Name)
		}
	}
	return nil
}

// oneLine joins a multi-line error message into one line.
func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

// texts encodes GLUE examples, labeled or not, for the model.
func (t *trained) texts(exs []glue.Example) ([]example, error) {
	return encodeTexts(t.tok, t.task, exs, t.c.MaxLen)
}

// ftConfig returns the fine-tuning configuration whose data and evaluation
// settings equal t's, for loadTaskData and evaluate.
func (t *trained) ftConfig() ftConfig {
	return ftConfig{Task: t.task.Name, GlueDir: t.c.GlueDir, Model: t.c.Model, BatchSize: t.c.BatchSize, MaxLen: t.c.MaxLen, Seed: t.c.Seed}
}

// close releases the compiled graphs.
func (t *trained) close() { t.sm.close() }
