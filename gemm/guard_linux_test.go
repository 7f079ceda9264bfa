package gemm

import (
	"os"
	"syscall"
	"testing"
)

// The assembly kernels and transposes read memory Go cannot bounds-check.
// With every operand ending just before a page that cannot be read or
// written, a read or write past any operand's end faults; the grid and
// the threaded products run so, with every operand packed, read in place,
// or as tuned.
func TestGuardPages(t *testing.T) {
	page := os.Getpagesize()
	var maps [][]byte
	guardedAlloc = func(bytes int) []byte {
		size := (bytes + page - 1) / page * page
		m, err := syscall.Mmap(-1, 0, size+page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mprotect(m[size:], syscall.PROT_NONE); err != nil {
			t.Fatal(err)
		}
		maps = append(maps, m)
		return m[size-bytes : size]
	}
	guardedRelease = func() {
		for _, m := range maps {
			if err := syscall.Munmap(m); err != nil {
				t.Fatal(err)
			}
		}
		maps = maps[:0]
	}
	defer func() {
		guardedRelease()
		guardedAlloc, guardedRelease = nil, nil
	}()
	t.Run("float32", func(t *testing.T) { testKernels(t, kernels32()) })
	t.Run("float64", func(t *testing.T) { testKernels(t, kernels64()) })
	t.Run("threads", func(t *testing.T) { inPlaceModes(t, testBlocksAndThreads) })
	t.Run("bf16", func(t *testing.T) { inPlaceModes(t, testSgemmBF16) })
	t.Run("f16", func(t *testing.T) { inPlaceModes(t, testSgemmF16) })
}
