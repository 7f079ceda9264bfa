// Package hfconfig reads and writes Hugging Face config.json files for the
// model graphs: a Go struct holds the keys a model uses, and every other key
// is kept verbatim (compacted) beside it, so that a config read and written
// again loses nothing.
package hfconfig

import (
	"bytes"
	"encoding/json"
	"os"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
)

// Keys returns the JSON keys that plain (a struct without a custom
// MarshalJSON) encodes to.
func Keys(plain any) (map[string]bool, error) {
	b, err := json.Marshal(plain)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	keys := make(map[string]bool, len(m))
	for k := range m {
		keys[k] = true
	}
	return keys, nil
}

// Extra returns the members of all whose keys known does not list, each
// compacted; nil when there are none.
func Extra(all map[string]json.RawMessage, known map[string]bool) (map[string]json.RawMessage, error) {
	var extra map[string]json.RawMessage
	for k, v := range all {
		if known[k] {
			continue
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, v); err != nil {
			return nil, errors.Wrapf(err, "config key %q", k)
		}
		if extra == nil {
			extra = map[string]json.RawMessage{}
		}
		extra[k] = compact.Bytes()
	}
	return extra, nil
}

// Merge returns the JSON object typed with extra's members added, keys
// sorted as Hugging Face writes them; a key in both is an error.
func Merge(typed []byte, extra map[string]json.RawMessage) ([]byte, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(typed, &all); err != nil {
		return nil, err
	}
	for k, v := range extra {
		if _, ok := all[k]; ok {
			return nil, errors.Errorf("config key %q is both a field and in Extra", k)
		}
		all[k] = v
	}
	return json.Marshal(all)
}

// Validator is a config that reports its first unusable setting.
type Validator interface {
	Validate() error
}

// Read parses the JSON file at path into v and validates it; what names
// the kind of config in errors (e.g. "roberta config").
func Read(path, what string, v Validator) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return errors.Wrapf(err, "reading %s", what)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return errors.Wrapf(err, "parsing %s %s", what, path)
	}
	return errors.Wrap(v.Validate(), path)
}

// Write validates v and writes it to path atomically as indented JSON with
// a final newline.
func Write(path, what string, v Validator) error {
	if err := v.Validate(); err != nil {
		return errors.Wrapf(err, "writing %s", path)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return errors.Wrapf(err, "encoding %s for %s", what, path)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return errors.Wrapf(err, "encoding %s for %s", what, path)
	}
	out.WriteByte('\n')
	return atomicfile.WriteBytes(path, out.Bytes())
}
