package hfconfig

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pkg/errors"
)

type plain struct {
	A int    `json:"a"`
	B string `json:"b"`
}

type cfg struct {
	plain
	Extra map[string]json.RawMessage `json:"-"`
}

func (c *cfg) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, &c.plain); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	known, err := Keys(plain{})
	if err != nil {
		return err
	}
	c.Extra, err = Extra(all, known)
	return err
}

func (c cfg) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(c.plain)
	if err != nil {
		return nil, err
	}
	return Merge(b, c.Extra)
}

func (c cfg) Validate() error {
	if c.A < 0 {
		return errors.Errorf("a = %d is negative", c.A)
	}
	return nil
}

// Unknown keys survive a read and a write, compacted and in sorted order.
func TestRoundTripKeepsExtraKeys(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.json")
	if err := os.WriteFile(in, []byte(`{"b": "x", "z_extra": [1,  2], "a": 3, "arch": {"k": true}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var c cfg
	if err := Read(in, "test config", &c); err != nil {
		t.Fatal(err)
	}
	if c.A != 3 || c.B != "x" || len(c.Extra) != 2 || string(c.Extra["z_extra"]) != "[1,2]" {
		t.Fatalf("read %+v", c)
	}
	out := filepath.Join(dir, "out.json")
	if err := Write(out, "test config", c); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	want := "{\n  \"a\": 3,\n  \"arch\": {\n    \"k\": true\n  },\n  \"b\": \"x\",\n  \"z_extra\": [\n    1,\n    2\n  ]\n}\n"
	if string(b) != want {
		t.Errorf("wrote\n%s\nwant\n%s", b, want)
	}
	var back cfg
	if err := Read(out, "test config", &back); err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("read back %+v, %v", back, err)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	if err := Read(filepath.Join(dir, "missing.json"), "test config", &cfg{}); err == nil || !strings.Contains(err.Error(), "reading test config") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"a": "three"}`), 0o644)
	if err := Read(bad, "test config", &cfg{}); err == nil || !strings.Contains(err.Error(), "parsing test config") {
		t.Errorf("bad type: %v", err)
	}
	neg := filepath.Join(dir, "neg.json")
	os.WriteFile(neg, []byte(`{"a": -1}`), 0o644)
	if err := Read(neg, "test config", &cfg{}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("invalid: %v", err)
	}
	if err := Write(filepath.Join(dir, "w.json"), "test config", cfg{plain: plain{A: -2}}); err == nil {
		t.Error("an invalid config was written")
	}
	if _, err := os.Stat(filepath.Join(dir, "w.json")); !os.IsNotExist(err) {
		t.Error("a rejected write left a file")
	}
	if _, err := Merge([]byte(`{"a":1}`), map[string]json.RawMessage{"a": json.RawMessage("2")}); err == nil {
		t.Error("a key both typed and extra was merged")
	}
}
