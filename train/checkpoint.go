package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// Files of a checkpoint folder.
const (
	stateFile     = "trainer_state.json"
	weightsFile   = "weights.safetensors"
	optimizerFile = "optimizer.safetensors"
	bestFile      = "best_weights.safetensors"
)

// checkpointFormat numbers the layout of a checkpoint folder.
const checkpointFormat = 1

// CheckpointDir is where a command keeps the checkpoint of the run whose
// outputs go to out.
func CheckpointDir(out string) string { return filepath.Join(out, "checkpoint") }

// HasCheckpoint reports whether dir holds a checkpoint (of a killed write,
// the complete version atomicfile left beside it counts).
func HasCheckpoint(dir string) bool {
	_, err := os.Stat(filepath.Join(atomicfile.Resolve(dir), stateFile))
	return err == nil
}

// checkpointState is trainer_state.json: everything about the run but the
// tensors.
type checkpointState[E any] struct {
	Format    int             `json:"format"`
	Identity  json.RawMessage `json:"identity"`
	Steps     int             `json:"total_steps"`
	Batch     int             `json:"batch"`
	GradAccum int             `json:"grad_accum"`
	Ranks     int             `json:"ranks"`
	Result    *Result[E]      `json:"result"`
	// LossSince and StepsSince are the training losses not yet reported by
	// an evaluation.
	LossSince  float64 `json:"loss_since"`
	StepsSince int     `json:"steps_since"`
	// BatchHash fingerprints the global batch of the last step done, so that
	// resuming with other data is refused instead of training on a
	// different order.
	BatchHash string `json:"batch_hash"`
	// OptimizerSteps is every parameter's AdamW step count.
	OptimizerSteps map[string]int `json:"optimizer_steps"`
	HasBest        bool           `json:"has_best"`
}

// hashBatch fingerprints a global batch.
func hashBatch(idx []int) string {
	h := sha256.New()
	for _, i := range idx {
		fmt.Fprintf(h, "%d,", i)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// identityJSON encodes the identity of a run.
func identityJSON(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	return b, errors.Wrap(err, "encoding the run's settings for its checkpoint")
}

// save writes the checkpoint folder (rank 0 only; the others have the same
// state).
func (r *runner[E]) save() error {
	if !r.rank0() {
		return nil
	}
	c := r.c
	id, err := identityJSON(c.Identity)
	if err != nil {
		return err
	}
	st := checkpointState[E]{Format: checkpointFormat, Identity: id, Steps: c.Steps, Batch: c.Batch,
		GradAccum: c.accum(), Result: r.res, LossSince: r.lossSince, StepsSince: r.stepsSince,
		OptimizerSteps: map[string]int{}, HasBest: r.best != nil}
	st.Ranks, _ = c.ranks()
	st.BatchHash = r.lastHash
	weights := make([]tensorfile.Tensor, 0, len(r.params))
	var moments []tensorfile.Tensor
	for i, p := range r.params {
		weights = append(weights, denseTensor(p.Name, p.Value))
		step, m, v, ok := c.Groups[r.group[i]].Opt.State(p.Value)
		if !ok {
			continue
		}
		st.OptimizerSteps[p.Name] = step
		moments = append(moments, denseTensor("m."+p.Name, m), denseTensor("v."+p.Name, v))
	}
	err = atomicfile.WriteDir(c.Checkpoint, func(dir string) error {
		if err := tensorfile.Write(filepath.Join(dir, weightsFile), weights, nil); err != nil {
			return err
		}
		if err := tensorfile.Write(filepath.Join(dir, optimizerFile), moments, nil); err != nil {
			return err
		}
		if r.best != nil {
			best := make([]tensorfile.Tensor, 0, len(r.params))
			for _, p := range r.params {
				best = append(best, tensorfile.FromFloat64(p.Name, p.Value.Shape(), r.best[p.Name]))
			}
			if err := tensorfile.Write(filepath.Join(dir, bestFile), best, nil); err != nil {
				return err
			}
		}
		return WriteJSON(filepath.Join(dir, stateFile), st)
	})
	return errors.Wrapf(err, "writing the checkpoint of step %d", r.res.Steps)
}

// denseTensor turns a float32 or float64 tensor into a file tensor.
func denseTensor(name string, t *tensor.Dense) tensorfile.Tensor {
	if d, ok := t.Data().([]float64); ok {
		return tensorfile.FromFloat64(name, t.Shape(), d)
	}
	return tensorfile.FromFloat32(name, t.Shape(), t.Data().([]float32))
}

// resume restores the run from the checkpoint folder: the weights, the
// optimiser state, the results so far and the best weights, and replays the
// data order up to the step it holds.
func (r *runner[E]) resume() error {
	c := r.c
	dir := atomicfile.Resolve(c.Checkpoint)
	wrap := func(err error) error {
		return errors.Wrapf(err, "resuming from the checkpoint %s", c.Checkpoint)
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return wrap(errors.New("it holds no checkpoint (the run was stopped before its first one); start the run again without -resume, with -overwrite"))
		}
		return wrap(err)
	}
	var st checkpointState[E]
	if err := json.Unmarshal(b, &st); err != nil {
		return wrap(errors.Wrapf(err, "reading %s", stateFile))
	}
	if err := r.compatible(st); err != nil {
		return wrap(err)
	}
	if err := r.loadTensors(dir, st); err != nil {
		return wrap(err)
	}
	// Replay the data order up to the checkpoint's step.
	var last []int
	for s := 0; s < st.Result.Steps; s++ {
		if last, err = r.task.Batch(s); err != nil {
			return wrap(errors.Wrapf(err, "replaying the batch of step %d", s))
		}
	}
	if h := hashBatch(last); st.Result.Steps > 0 && h != st.BatchHash {
		return wrap(errors.New("the data order differs from the checkpoint's (its last batch does not match): resume with the same data, tokenizer and settings"))
	}
	r.lastHash = st.BatchHash
	r.res = st.Result
	r.res.Interrupted = false
	r.res.ResumedFrom = st.Result.Steps
	r.lossSince, r.stepsSince = st.LossSince, st.StepsSince
	return nil
}

// compatible checks that a checkpoint belongs to this run.
func (r *runner[E]) compatible(st checkpointState[E]) error {
	c := r.c
	size, _ := c.ranks()
	switch {
	case st.Format != checkpointFormat:
		return errors.Errorf("its format is %d; this version reads %d", st.Format, checkpointFormat)
	case st.Result == nil || st.Result.Steps < 0 || st.Result.Steps > st.Steps:
		return errors.Errorf("%s holds no consistent result", stateFile)
	case st.Steps != c.Steps:
		return errors.Errorf("it is of a run of %d steps, this one has %d: resume with the same number of steps (the schedule depends on it)", st.Steps, c.Steps)
	case st.Batch != c.Batch || st.GradAccum != c.accum() || st.Ranks != size:
		return errors.Errorf("it was trained with batch %d, -grad_accum %d on %d ranks; this run has %d, %d and %d: resume with the same (the data order depends on them)",
			st.Batch, st.GradAccum, st.Ranks, c.Batch, c.accum(), size)
	}
	id, err := identityJSON(c.Identity)
	if err != nil {
		return err
	}
	var a, b any
	if err := json.Unmarshal(id, &a); err != nil {
		return errors.Wrap(err, "decoding the run's settings")
	}
	if err := json.Unmarshal(st.Identity, &b); err != nil {
		return errors.Wrap(err, "decoding the checkpoint's settings")
	}
	if !reflect.DeepEqual(a, b) {
		return errors.Errorf("its settings differ from this run's: %s against %s; resume with the same flags", st.Identity, id)
	}
	return nil
}

// loadTensors reads the weights, moments and best weights of a checkpoint.
func (r *runner[E]) loadTensors(dir string, st checkpointState[E]) error {
	weights, err := tensorfile.Open(filepath.Join(dir, weightsFile))
	if err != nil {
		return err
	}
	moments, err := tensorfile.Open(filepath.Join(dir, optimizerFile))
	if err != nil {
		return err
	}
	var best *tensorfile.File
	if st.HasBest {
		if best, err = tensorfile.Open(filepath.Join(dir, bestFile)); err != nil {
			return err
		}
		r.best = map[string][]float64{}
	}
	for i, p := range r.params {
		if err := readInto(weights, p.Name, p.Value); err != nil {
			return err
		}
		if best != nil {
			v, shape, err := best.Float64(p.Name)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(shape, []int(p.Value.Shape())) {
				return errors.Errorf("best weights of %s are %v, the parameter %v", p.Name, shape, p.Value.Shape())
			}
			r.best[p.Name] = v
		}
		step, ok := st.OptimizerSteps[p.Name]
		if !ok {
			continue
		}
		m := tensor.New(tensor.WithShape(p.Value.Shape().Clone()...), tensor.Of(p.Value.Dtype()))
		v := tensor.New(tensor.WithShape(p.Value.Shape().Clone()...), tensor.Of(p.Value.Dtype()))
		if err := readInto(moments, "m."+p.Name, m); err != nil {
			return err
		}
		if err := readInto(moments, "v."+p.Name, v); err != nil {
			return err
		}
		if err := r.c.Groups[r.group[i]].Opt.SetState(p.Value, step, m, v); err != nil {
			return errors.Wrapf(err, "optimiser state of %s", p.Name)
		}
	}
	if n := len(weights.Names()); n != len(r.params) {
		return errors.Errorf("%s holds %d tensors, the run trains %d parameters", weightsFile, n, len(r.params))
	}
	return nil
}

// readInto copies the named tensor of f into t, which must have its shape;
// the values must be finite.
func readInto(f *tensorfile.File, name string, t *tensor.Dense) error {
	var shape []int
	var err error
	switch d := t.Data().(type) {
	case []float32:
		var v []float32
		if v, shape, err = f.Float32(name); err == nil && len(v) == len(d) {
			copy(d, v)
		}
	case []float64:
		var v []float64
		if v, shape, err = f.Float64(name); err == nil && len(v) == len(d) {
			copy(d, v)
		}
	default:
		return errors.Errorf("%s is %v; only float32 and float64 parameters train", name, t.Dtype())
	}
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(shape, []int(t.Shape())) {
		return errors.Errorf("%s is %v in the checkpoint, %v in the model", name, shape, t.Shape())
	}
	return layers.CheckFinite(name, t)
}
