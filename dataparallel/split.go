package dataparallel

import "github.com/pkg/errors"

// Split cuts indices into parts consecutive pieces whose lengths differ by
// at most one (the first len(indices) mod parts pieces are one longer), in
// the order given. It cuts a global batch into the ranks' shares, and a
// share into micro-batches; a piece is empty when there are fewer indices
// than parts (that rank or micro-batch then contributes no gradient).
func Split(indices []int, parts int) ([][]int, error) {
	if parts < 1 {
		return nil, errors.Errorf("dataparallel.Split: %d parts; ask for at least 1", parts)
	}
	out := make([][]int, parts)
	n, extra := len(indices)/parts, len(indices)%parts
	off := 0
	for p := range out {
		size := n
		if p < extra {
			size++
		}
		out[p] = indices[off : off+size : off+size]
		off += size
	}
	return out, nil
}
