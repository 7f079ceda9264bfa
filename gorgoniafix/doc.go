// Package gorgoniafix holds our replacements for defects in Gorgonia v0.9.18
// (gorgonia.org/gorgonia, the last tagged release) that Lily's training code
// would otherwise hit:
//
//   - AdamW replaces G.NewAdamW, whose Step never writes the updated weights
//     back (tensor.Mul without UseUnsafe allocates a copy) and whose moment
//     recurrences use the bias-correction terms as decay rates.
//   - Reshape replaces G.Reshape, whose output aliases the source tensor, so an
//     elementwise op that takes the reshaped node as its left operand
//     overwrites the source in place (gorgonia#511).
//   - Dropout replaces G.Dropout, whose backward pass scales by 1/p instead of
//     1/(1-p), whose hash ignores p (two dropouts with different p on one input
//     become a single node) and whose eval mode returns its input aliased.
//
// Every replacement has a test that asserts the upstream defect is still
// present. If such a test fails, upstream behaviour has changed and the
// corresponding workaround may be removable; the test's message says which.
// The same tests check our replacements against independent hand
// computations.
package gorgoniafix
