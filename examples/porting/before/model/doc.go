// Package model is the porting example's classifier before the port: a
// multilayer perceptron written the way Gorgonia's own examples are written
// — a plain model struct whose weights are nodes made with
// gorgonia.NewMatrix, a learnables method, a forward pass with gorgonia.Mul,
// and a training loop with gorgonia.Let, RunAll, a solver Step and Reset.
// Its checkpoint is a gob file.
//
// ../../after/model is the same file after the port to Lily;
// docs/porting.md shows the diff between the two.
package model
