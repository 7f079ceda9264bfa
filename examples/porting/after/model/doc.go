// Package model is the porting example's classifier after the port: the
// multilayer perceptron of ../../before/model with its linear layers wrapped
// by package port, so that Train fits a Lily (or LoRA) adapter and saves it
// apart while the model's weights stay frozen, and Accuracy evaluates the
// model with a saved adapter.
//
// docs/porting.md shows the diff between the two versions of model.go.
package model
