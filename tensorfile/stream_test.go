package tensorfile

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteStreamEqualsEncode: a streamed file is byte for byte what Encode
// writes for the same tensors, and a fill writing the wrong length fails
// without touching the existing file.
func TestWriteStreamEqualsEncode(t *testing.T) {
	ts := []Tensor{
		FromFloat32("b.weight", []int{2, 3}, []float32{1, 2, 3, 4, 5, 6}),
		FromFloat64("a", []int{2}, []float64{-1, 0.5}),
		{Name: "h", Dtype: BF16, Shape: []int{3}, Data: []byte{1, 2, 3, 4, 5, 6}},
		FromFloat32("scalar", nil, []float32{7}),
	}
	meta := map[string]string{"format": "pt"}
	want, err := Encode(ts, meta)
	if err != nil {
		t.Fatal(err)
	}
	var specs []Spec
	data := map[string][]byte{}
	for _, x := range ts {
		specs = append(specs, Spec{Name: x.Name, Dtype: x.Dtype, Shape: x.Shape})
		data[x.Name] = x.Data
	}
	path := filepath.Join(t.TempDir(), "s.safetensors")
	err = WriteStream(path, specs, meta, func(s Spec, w io.Writer) error {
		_, err := w.Write(data[s.Name])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("streamed file differs from Encode's:\n%q\n%q", got, want)
	}
	err = WriteStream(path, specs, meta, func(s Spec, w io.Writer) error {
		_, err := w.Write(data[s.Name][1:])
		return err
	})
	if err == nil {
		t.Fatal("a short tensor was accepted")
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, want) {
		t.Fatal("a failed stream changed the file")
	}
	if _, err := StreamOrder([]Spec{{Name: "x", Dtype: "F32"}, {Name: "x", Dtype: "F32"}}); err == nil {
		t.Fatal("a repeated name was accepted")
	}
}
