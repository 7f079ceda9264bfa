package adapterfile

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	"github.com/pkg/errors"
)

// Load reads the adapter directory dir into store s for a model with the
// given sites: it builds the adapter from adapter_config.json, lays it out
// over the sites, checks every tensor's shape, and copies the values into
// the store (adding the adapter's parameters when they are not attached
// yet). Extra modules (modules_to_save, such as a classifier head) must
// already exist in the store with matching shapes. Missing and unexpected
// keys are reported by name.
func Load(dir string, s *layers.Store, sites []layers.Site) (layers.Adapter, error) {
	dir = atomicfile.Resolve(dir)
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	a, err := cfg.Adapter()
	if err != nil {
		return nil, err
	}
	specs, err := a.Layout(sites)
	if err != nil {
		return nil, errors.Wrapf(err, "adapter in %s does not fit the model", dir)
	}
	f, err := tensorfile.Open(filepath.Join(dir, WeightsName))
	if err != nil {
		return nil, err
	}
	// Every key the file may hold, mapped to the store parameter it fills.
	want := map[string]string{}
	for _, sp := range specs {
		want[sp.Name] = sp.Name
	}
	aliases := map[string]string{}
	if l, ok := a.(*layers.Lily); ok {
		for k, v := range l.PEFTNames() {
			if k != v {
				aliases[k] = v
			}
		}
	}
	var unexpected, missing []string
	values := map[string][]float64{}
	for _, key := range f.Names() {
		name, ok := strings.CutPrefix(key, Prefix)
		if !ok {
			unexpected = append(unexpected, key)
			continue
		}
		target := name
		if canon, isAlias := aliases[name]; isAlias {
			target = canon
		} else if _, isOwn := want[name]; !isOwn {
			if _, inStore := s.Get(name); !inStore {
				unexpected = append(unexpected, key)
				continue
			}
		}
		v, err := readParam(f, key, s, target, specs)
		if err != nil {
			return nil, err
		}
		if prev, seen := values[target]; seen {
			if !equal(prev, v) {
				return nil, errors.Errorf("%s: %s repeats the shared tensor %s with different values", dir, key, target)
			}
			continue
		}
		values[target] = v
	}
	for _, sp := range specs {
		if _, ok := values[sp.Name]; !ok {
			missing = append(missing, Prefix+sp.Name)
		}
	}
	if len(missing) > 0 || len(unexpected) > 0 {
		sort.Strings(missing)
		sort.Strings(unexpected)
		return nil, errors.Errorf("%s does not match the model: missing keys %v, unexpected keys %v", dir, missing, unexpected)
	}
	// All checks passed: now change the store.
	for _, sp := range specs {
		if _, ok := s.Get(sp.Name); !ok {
			if _, err := s.New(sp, true, rand.New(rand.NewPCG(0, 0))); err != nil {
				return nil, err
			}
		}
	}
	for name, v := range values {
		p, _ := s.Get(name)
		setValues(p, v)
	}
	if l, ok := a.(*layers.Lily); ok && cfg.Ext != nil && len(cfg.Ext.FrozenMixing) > 0 {
		if err := l.FreezeMixing(cfg.Ext.FrozenMixing); err != nil {
			return nil, errors.Wrap(err, dir)
		}
	}
	return a, nil
}

// readParam reads key and returns its values in the store layout of the
// parameter target (an adapter spec, or an existing store parameter). The
// shapes are compared before anything of the parameter's size is
// allocated, so a config with an absurd rank fails here, not in an
// allocation.
func readParam(f *tensorfile.File, key string, s *layers.Store, target string, specs []layers.ParamSpec) ([]float64, error) {
	var shape, ts []int
	var torch layers.Layout
	found := false
	if p, ok := s.Get(target); ok {
		shape, torch, ts, found = p.Value.Shape(), p.Torch, p.TorchShape, true
	}
	for _, sp := range specs {
		if !found && sp.Name == target {
			shape, torch, ts, found = sp.Shape, sp.Torch, sp.TorchShape, true
		}
	}
	if !found {
		return nil, errors.Errorf("%s: no parameter %q for it", key, target)
	}
	want := layoutShape(shape, torch, ts)
	if got, _ := f.Shape(key); fmt.Sprint(got) != fmt.Sprint(want) {
		return nil, errors.Errorf("%s has shape %v, the model needs %v", key, got, want)
	}
	vals, _, err := f.Float64(key)
	if err != nil {
		return nil, err
	}
	if i := layers.FirstNonFinite(vals); i >= 0 {
		return nil, errors.Errorf("%s holds %v at element %d (a corrupt or diverged adapter)", key, vals[i], i)
	}
	if torch == layers.Transposed {
		vals = transpose(vals, shape[1], shape[0])
	}
	return vals, nil
}

func setValues(p *layers.Param, v []float64) {
	switch d := p.Value.Data().(type) {
	case []float64:
		copy(d, v)
	case []float32:
		for i, x := range v {
			d[i] = float32(x)
		}
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
