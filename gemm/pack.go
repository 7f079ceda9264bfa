package gemm

// packA copies the mb×kb block of op(A) at (ic, pc), times alpha, into dst
// as MR-row micro-panels: panel t holds rows t·MR… of the block, column by
// column (dst[t·MR·kb + p·MR + r]). The rows of a last partial panel past
// mb keep whatever dst held: the kernels compute each row of C from its own
// row of A alone and never store the rows past the edge, so those values
// cannot reach C.
func packA[T Float](dst []T, trans bool, a []T, lda, ic, pc, mb, kb, mr int, alpha T) {
	for ir := 0; ir < mb; ir += mr {
		rows := min(mr, mb-ir)
		panel := dst[ir*kb : ir*kb+mr*kb]
		if trans {
			// op(A)[i][p] = a[p·lda + i]: each p reads rows contiguous values.
			for p := 0; p < kb; p++ {
				src := a[(pc+p)*lda+ic+ir:][:rows]
				d := panel[p*mr : p*mr+mr]
				if alpha == 1 {
					copy(d, src)
				} else {
					for r, v := range src {
						d[r] = alpha * v
					}
				}
			}
			continue
		}
		// op(A)[i][p] = a[i·lda + p]: the panel is the transpose of rows
		// rows of A.
		if alpha == 1 && transposeFast(panel, mr, a[(ic+ir)*lda+pc:], lda, rows, kb) {
			continue
		}
		for r := 0; r < rows; r++ {
			src := a[(ic+ir+r)*lda+pc:][:kb]
			d := panel[r:]
			if alpha == 1 {
				for p, v := range src {
					d[p*mr] = v
				}
			} else {
				for p, v := range src {
					d[p*mr] = alpha * v
				}
			}
		}
	}
}

// packB copies the kb×nb block of op(B) at (pc, jc), times alpha, into dst
// as NR-column micro-panels: panel t holds columns t·NR… of the block, row
// by row (dst[t·NR·kb + p·NR + j]). The columns of a last partial panel
// past nb keep whatever dst held, as packA's rows do: each column of C
// depends on its own column of B alone, and the kernels mask the columns
// past the edge when they store.
func packB[T Float](dst []T, trans bool, b []T, ldb, pc, jc, kb, nb, nr int, alpha T) {
	for jr := 0; jr < nb; jr += nr {
		cols := min(nr, nb-jr)
		panel := dst[jr*kb : jr*kb+nr*kb]
		if !trans {
			// op(B)[p][j] = b[p·ldb + j]: each p reads cols contiguous values.
			for p := 0; p < kb; p++ {
				d := panel[p*nr : p*nr+nr]
				src := b[(pc+p)*ldb+jc+jr:][:cols]
				if alpha == 1 {
					copy(d, src)
				} else {
					for j, v := range src {
						d[j] = alpha * v
					}
				}
			}
			continue
		}
		// op(B)[p][j] = b[j·ldb + p]: each column j of op(B) is a stored row,
		// and the panel is the transpose of cols rows of B.
		if alpha == 1 && transposeFast(panel, nr, b[(jc+jr)*ldb+pc:], ldb, cols, kb) {
			continue
		}
		for j := 0; j < cols; j++ {
			src := b[(jc+jr+j)*ldb+pc:][:kb]
			d := panel[j:]
			if alpha == 1 {
				for p, v := range src {
					d[p*nr] = v
				}
			} else {
				for p, v := range src {
					d[p*nr] = alpha * v
				}
			}
		}
	}
}
