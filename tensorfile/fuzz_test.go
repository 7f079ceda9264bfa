package tensorfile

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Decode. Nothing may panic, and whatever
// decodes must survive re-encoding: Encode of the decoded tensors and
// metadata decodes to the same contents, and encoding that again is stable.
func FuzzRead(f *testing.F) {
	f.Add(pythonFile)
	valid, err := Encode([]Tensor{
		FromFloat32("a", []int{2, 2}, []float32{1, 2, 3, 4}),
		FromFloat64("b", []int{1}, []float64{5}),
		{Name: "c", Dtype: F16, Shape: []int{}, Data: []byte{0, 0x3c}},
		{Name: "d", Dtype: BF16, Shape: []int{0}, Data: nil},
		{Name: "e", Dtype: "I8", Shape: []int{3}, Data: []byte{1, 2, 3}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(fileBytes(`{"__metadata__":null}`, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Decode(data)
		if err != nil {
			return
		}
		var tensors []Tensor
		for _, name := range file.Names() {
			tt, ok := file.Tensor(name)
			if !ok {
				t.Fatalf("listed tensor %q missing", name)
			}
			shape, _ := file.Shape(name)
			dtype, _ := file.Dtype(name)
			if !reflect.DeepEqual(shape, tt.Shape) || dtype != tt.Dtype {
				t.Fatalf("tensor %q: inconsistent accessors", name)
			}
			v32, s32, err32 := file.Float32(name)
			v64, _, err64 := file.Float64(name)
			if isFloat(dtype) {
				n := len(tt.Data) / dtypes[dtype].size
				if err32 != nil || err64 != nil || len(v32) != n || len(v64) != n || !reflect.DeepEqual(s32, shape) {
					t.Fatalf("tensor %q: float access failed: %v, %v", name, err32, err64)
				}
			} else if err32 == nil || err64 == nil {
				t.Fatalf("tensor %q: dtype %s converted", name, dtype)
			}
			tensors = append(tensors, tt)
		}
		enc, err := Encode(tensors, file.Metadata())
		if err != nil {
			t.Fatalf("re-encoding a decoded file: %v", err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("decoding a re-encoded file: %v", err)
		}
		if !reflect.DeepEqual(again.Names(), file.Names()) || !reflect.DeepEqual(again.Metadata(), file.Metadata()) {
			t.Fatal("re-encoded file differs")
		}
		for _, tt := range tensors {
			got, _ := again.Tensor(tt.Name)
			if got.Dtype != tt.Dtype || !reflect.DeepEqual(got.Shape, tt.Shape) || !bytes.Equal(got.Data, tt.Data) {
				t.Fatalf("tensor %q differs after re-encoding", tt.Name)
			}
		}
		enc2, err := Encode(tensors, again.Metadata())
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %v", err)
		}
	})
}
