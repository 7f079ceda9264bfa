// Package tensorfile reads and writes tensors in the Hugging Face
// safetensors format.
//
// A safetensors file is an 8-byte little-endian unsigned header length N,
// then N bytes of UTF-8 JSON header, then the raw little-endian tensor data.
// The header maps each tensor name to its dtype, shape and byte range
// ("data_offsets", relative to the start of the data) and may hold an
// "__metadata__" object of string-to-string pairs.
//
// The package is used to load Hugging Face model checkpoints (RoBERTa,
// LLaMA, Mamba), to read and write PEFT-compatible adapter files, and to
// save our own checkpoints. [Open] reads a file whole into memory;
// [OpenReader] reads the header only and then one tensor at a time, so
// that a large checkpoint is loaded without holding the file and its
// converted tensors at once.
//
// The accepted dtypes are BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16,
// BF16, I32, U32, F32, F64, I64 and U64; any other (such as the sub-byte F4)
// is rejected as unknown. Tensors of every accepted dtype can be read and
// written as raw bytes ([Tensor]); the float ones also convert.
//
// Reading ([Open], [Decode]) validates the whole file up front: header
// length, JSON syntax, UTF-8, dtypes, shapes, and that the tensors' byte
// ranges match their shapes and cover the data buffer exactly, without
// overlaps or gaps. Malformed input of any kind yields an error, never a
// panic. [File.Float32] and [File.Float64] convert F16, BF16, F32 and F64
// tensors exactly (F64 to float32 rounds to nearest even). [File.BF16] and
// [Reader.BF16] return bfloat16 values (gemm.BF16) for frozen weights kept
// in half the memory: a BF16 tensor's bits as they are (the Reader reads
// them from disk straight into the result), wider ones rounded to nearest
// even. [File.F16] and [Reader.F16] do the same for IEEE float16
// (gemm.F16): an F16 tensor's bits as they are, others rounded to it.
//
// Writing ([Write], [Encode]) is deterministic: identical tensors and
// metadata give byte-identical files whatever the order of the input.
// The layout follows the reference (Rust/Python) implementation: tensors are
// laid out by decreasing dtype alignment and then by name, the header lists
// "__metadata__" first and then the tensors in data order, and the header is
// padded with spaces to a multiple of 8 bytes. [Write] replaces the target
// file atomically.
package tensorfile
