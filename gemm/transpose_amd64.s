//go:build amd64 && !purego

#include "textflag.h"

// func transpose8x8s(src *float32, lds int, dst *float32, ldd int, blocks int)
//
// Transposes blocks consecutive 8×8 blocks of float32: block b reads rows
// src[r·lds + 8b : 8b+8] (r = 0..7) and writes them as columns:
// dst[(8b+c)·ldd + r] = src[r·lds + 8b + c]. Strides are in elements.
// AVX: unpack pairs, shuffle quads, swap 128-bit lanes.
TEXT ·transpose8x8s(SB), NOSPLIT, $0-40
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), AX
	MOVQ dst+16(FP), DI
	MOVQ ldd+24(FP), BX
	MOVQ blocks+32(FP), CX
	SHLQ $2, AX
	SHLQ $2, BX
	LEAQ (AX)(AX*2), R8  // 3·lds
	LEAQ (BX)(BX*2), R9  // 3·ldd
	TESTQ CX, CX
	JEQ done

loop:
	// Rows 0..7: SI, SI+lds, SI+2lds, SI+3lds, then R10 = SI+4lds.
	LEAQ (SI)(AX*4), R10
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(AX*1), Y1
	VMOVUPS (SI)(AX*2), Y2
	VMOVUPS (SI)(R8*1), Y3
	VMOVUPS (R10), Y4
	VMOVUPS (R10)(AX*1), Y5
	VMOVUPS (R10)(AX*2), Y6
	VMOVUPS (R10)(R8*1), Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	// Columns 0..7 of the block become rows of dst.
	LEAQ (DI)(BX*4), R11
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, (DI)(BX*1)
	VMOVUPS Y10, (DI)(BX*2)
	VMOVUPS Y11, (DI)(R9*1)
	VMOVUPS Y12, (R11)
	VMOVUPS Y13, (R11)(BX*1)
	VMOVUPS Y14, (R11)(BX*2)
	VMOVUPS Y15, (R11)(R9*1)

	ADDQ $32, SI
	LEAQ (R11)(BX*4), DI
	DECQ CX
	JNE loop

done:
	VZEROUPPER
	RET

// func transpose4x4d(src *float64, lds int, dst *float64, ldd int, blocks int)
//
// transpose8x8s for float64 in 4×4 blocks: block b reads rows
// src[r·lds + 4b : 4b+4] (r = 0..3) and writes
// dst[(4b+c)·ldd + r] = src[r·lds + 4b + c].
TEXT ·transpose4x4d(SB), NOSPLIT, $0-40
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), AX
	MOVQ dst+16(FP), DI
	MOVQ ldd+24(FP), BX
	MOVQ blocks+32(FP), CX
	SHLQ $3, AX
	SHLQ $3, BX
	LEAQ (AX)(AX*2), R8  // 3·lds
	LEAQ (BX)(BX*2), R9  // 3·ldd
	TESTQ CX, CX
	JEQ done4

loop4:
	VMOVUPD (SI), Y0
	VMOVUPD (SI)(AX*1), Y1
	VMOVUPD (SI)(AX*2), Y2
	VMOVUPD (SI)(R8*1), Y3

	VUNPCKLPD Y1, Y0, Y4
	VUNPCKHPD Y1, Y0, Y5
	VUNPCKLPD Y3, Y2, Y6
	VUNPCKHPD Y3, Y2, Y7

	VPERM2F128 $0x20, Y6, Y4, Y0
	VPERM2F128 $0x20, Y7, Y5, Y1
	VPERM2F128 $0x31, Y6, Y4, Y2
	VPERM2F128 $0x31, Y7, Y5, Y3

	VMOVUPD Y0, (DI)
	VMOVUPD Y1, (DI)(BX*1)
	VMOVUPD Y2, (DI)(BX*2)
	VMOVUPD Y3, (DI)(R9*1)

	ADDQ $32, SI
	LEAQ (DI)(BX*4), DI
	DECQ CX
	JNE loop4

done4:
	VZEROUPPER
	RET

// func transpose8x8h(src *BF16, lds int, dst *float32, ldd int, blocks int, alpha float32)
//
// transpose8x8s for a bfloat16 source, widened and scaled by alpha on the
// way: dst[(8b+c)·ldd + r] = alpha·float32(src[r·lds + 8b + c]). A row of
// 8 bfloat16 values is zero-extended to 32-bit lanes and shifted into the
// upper halves, which is its exact float32 value.
TEXT ·transpose8x8h(SB), NOSPLIT, $0-44
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), AX
	MOVQ dst+16(FP), DI
	MOVQ ldd+24(FP), BX
	MOVQ blocks+32(FP), CX
	SHLQ $1, AX
	SHLQ $2, BX
	LEAQ (AX)(AX*2), R8  // 3·lds
	LEAQ (BX)(BX*2), R9  // 3·ldd
	TESTQ CX, CX
	JEQ hdone

hloop:
	VBROADCASTSS alpha+40(FP), Y15
	LEAQ (SI)(AX*4), R10
	VPMOVZXWD (SI), Y0
	VPMOVZXWD (SI)(AX*1), Y1
	VPMOVZXWD (SI)(AX*2), Y2
	VPMOVZXWD (SI)(R8*1), Y3
	VPMOVZXWD (R10), Y4
	VPMOVZXWD (R10)(AX*1), Y5
	VPMOVZXWD (R10)(AX*2), Y6
	VPMOVZXWD (R10)(R8*1), Y7
	VPSLLD $16, Y0, Y0
	VPSLLD $16, Y1, Y1
	VPSLLD $16, Y2, Y2
	VPSLLD $16, Y3, Y3
	VPSLLD $16, Y4, Y4
	VPSLLD $16, Y5, Y5
	VPSLLD $16, Y6, Y6
	VPSLLD $16, Y7, Y7
	VMULPS Y15, Y0, Y0
	VMULPS Y15, Y1, Y1
	VMULPS Y15, Y2, Y2
	VMULPS Y15, Y3, Y3
	VMULPS Y15, Y4, Y4
	VMULPS Y15, Y5, Y5
	VMULPS Y15, Y6, Y6
	VMULPS Y15, Y7, Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	LEAQ (DI)(BX*4), R11
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, (DI)(BX*1)
	VMOVUPS Y10, (DI)(BX*2)
	VMOVUPS Y11, (DI)(R9*1)
	VMOVUPS Y12, (R11)
	VMOVUPS Y13, (R11)(BX*1)
	VMOVUPS Y14, (R11)(BX*2)
	VMOVUPS Y15, (R11)(R9*1)

	ADDQ $16, SI
	LEAQ (R11)(BX*4), DI
	DECQ CX
	JNE hloop

hdone:
	VZEROUPPER
	RET
