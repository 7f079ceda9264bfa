// Package roberta builds Hugging Face's RoBERTa encoder as Gorgonia graphs
// with an adapter (Lily, LoRA or none) at every linear layer, and reads and
// writes Hugging Face model directories.
//
// A fine-tuning run:
//
//	ck, err := roberta.Load("roberta-base", roberta.LoadOptions{})
//	ck.Store.Freeze()                                  // train only what follows
//	lily, err := layers.NewLily(layers.LilyConfig{...TargetModules: []string{"query", "value"}})
//	err = layers.Attach(ck.Store, lily, ck.Config.Sites(), rng)
//	err = roberta.AddClassifier(ck.Store, ck.Config, numLabels, seed)
//	g := ck.Store.NewGraph(true)                       // one graph per (batch, length) bucket and mode
//	m, err := roberta.Build(g, ck.Config, lily, batch, seqLen, roberta.Options{Classifier: true})
//	err = m.SetInputs(ids, mask, nil)                  // then run a TapeMachine over g.G
//
// The graphs compute exactly what transformers' RobertaModel,
// RobertaForSequenceClassification and RobertaForMaskedLM compute (position
// ids with RoBERTa's padding offset, additive attention mask with the
// dtype's minimum, post-LN blocks, exact GELU); the package's tests compare
// them with an independent plain-Go forward pass.
//
// Parameters live in a layers.Store under their Hugging Face names with the
// "roberta." prefix ("roberta.encoder.layer.3.attention.self.query.weight",
// "classifier.out_proj.bias", "lm_head.layer_norm.weight"); linear weights are
// stored [in, out] (PyTorch's transpose) so graphs compute x·W. The adapter
// sites are the six linears of every layer, with their Hugging Face module
// paths, so PEFT's target_modules ("query,value", "dense", …) select them.
//
// Self-attention is one fused node per layer: softmax(QKᵀ/√d + mask)·V for
// every sequence and head, read and written directly in the [batch, tokens,
// hidden] layout, with a hand-written backward pass; the embedding lookup,
// LayerNorm and GELU are the fused ops of package lilyop. An encoder layer
// is 18 operation nodes in an evaluation graph without adapter.
package roberta
