package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An unusable -out is refused, and so are sizes no machine has, before
// anything is trained.
func TestRefusedBeforeWork(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for out, want := range map[string]string{file: "is a file", filepath.Join(file, "x"): "is a file, not a folder"} {
		if err := run(context.Background(), tinyArgs(out), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("-out %s: %v, want %q", out, err, want)
		}
	}
	for _, extra := range [][]string{
		{"-hidden", "16777216"},
		{"-layers", "1099511627776"},
		{"-batch", "1099511627776"},
		{"-lily_r", "1073741824"},
		{"-lily_num_B", "1099511627776"},
		{"-lily_r", "1099511627776", "-lily_num_B", "1099511627776"},
		{"-lora_r", "1099511627776"},
	} {
		err := run(context.Background(), tinyArgs(filepath.Join(t.TempDir(), "out"), extra...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "this machine has") && !strings.Contains(err.Error(), "more than") {
			t.Errorf("%v: %v", extra, err)
		}
	}
}
