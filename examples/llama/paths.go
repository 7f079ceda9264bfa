package main

import (
	"os"
	"path/filepath"
)

// Default data locations, relative to the folder that holds the repository
// checkout (see sharedPath).
const (
	defaultCheckpoint = "llama2c/stories260K.bin"
	defaultTokenizer  = "llama2c/tok512.bin"
	defaultGlueDir    = "glue"
)

// sharedPath returns the path of rel inside the shared data folder
// ../shared/data. It is looked up relative to the working directory and then
// relative to every parent up to the repository root (the folder with
// go.mod), so the defaults work from the repository root as well as from
// examples/llama (as in tests). When it is found nowhere the
// working-directory path is returned, for the error message.
func sharedPath(rel string) string {
	first := filepath.Join("..", "shared", "data", rel)
	dir, err := os.Getwd()
	if err != nil {
		return first
	}
	for {
		p := filepath.Join(dir, "..", "shared", "data", rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return first
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return first
		}
		dir = parent
	}
}

// orShared returns path, or the shared data path of rel when path is empty.
func orShared(path, rel string) string {
	if path != "" {
		return path
	}
	return sharedPath(rel)
}

// Help of -checkpoint and -tokenizer, shared by every subcommand.
const (
	checkpointHelp = "llama2.c checkpoint file, or Hugging Face LLaMA directory (config.json, model.safetensors or model-0000k-of-0000n.safetensors shards with model.safetensors.index.json, tokenizer.json) (default ../shared/data/" + defaultCheckpoint + ", looked up from the working directory up to the repository root)"
	baseDtypeHelp  = "frozen weight matrices in f32, bf16 or f16 (bfloat16 or IEEE float16: half the memory, computed as float32; adapters train in float32; not with -adapter full)"
	tokenizerHelp  = "llama2.c tokenizer file, or a Hugging Face tokenizer.json (byte-level BPE as LLaMA 3's, or SentencePiece-style as LLaMA 2's) (default: the -checkpoint directory's tokenizer.json, else ../shared/data/" + defaultTokenizer + ")"
)
