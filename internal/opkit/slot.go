package opkit

import (
	"reflect"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Slot lets one node's op hand out the same output buffer on every run
// instead of a fresh one: Gorgonia's TapeMachine allocates a new value for
// every node on every run (Reset clears its registers), which for a
// transformer step means gigabytes of allocation, zeroing and garbage
// collection. A slot is off until EnableReuse switches it on, so values stay
// fresh wherever nothing has vouched that no one keeps them across runs.
type Slot struct {
	reuse bool
	data  any // the last output's backing array ([]float32 or []float64)
}

// Reusing reports whether the slot recycles its output.
func (s *Slot) Reusing() bool { return s != nil && s.reuse }

// Slotted is an op that draws its output from a Slot (every op embedding
// Base that Apply created).
type Slotted interface {
	OutputSlot() *Slot
}

// OutputSlot returns the op's slot; nil (no recycling) unless the op was
// created by Apply.
func (b Base) OutputSlot() *Slot { return b.slot }

// Apply is gorgonia.ApplyOp for an op that embeds Base: it gives the op a
// slot of its own first, so that its node can recycle its output once
// EnableReuse allows it. Every node must get its own slot — an op value
// copied from another op (a gradient op derived from its forward op) shares
// the original's slot until Apply replaces it — so create every node of
// such ops through Apply.
func Apply(op G.Op, children ...*G.Node) (*G.Node, error) {
	v := reflect.ValueOf(op)
	if v.Kind() == reflect.Struct {
		c := reflect.New(v.Type()).Elem()
		c.Set(v)
		if f := c.FieldByName("Base"); f.IsValid() && f.CanSet() && f.Type() == reflect.TypeOf(Base{}) {
			f.Set(reflect.ValueOf(Base{slot: &Slot{}}))
			op = c.Interface().(G.Op)
		}
	}
	return G.ApplyOp(op, children...)
}

// Output returns a tensor of the given shape with its backing array for an
// op's result: the slot's previous array when the slot recycles and it has
// the size and type, else a fresh one (which the slot then keeps, if it
// recycles). With zero set the contents are zero; otherwise a recycled
// array holds the previous run's values and the op must write every
// element.
func Output[T Float](s *Slot, shape tensor.Shape, zero bool) (*tensor.Dense, []T) {
	n := shape.TotalSize()
	if s.Reusing() {
		if d, ok := s.data.([]T); ok && len(d) == n {
			if zero {
				clear(d)
			}
			return tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(d)), d
		}
	}
	out, d := NewDense[T](shape)
	if s.Reusing() {
		s.data = d
	}
	return out, d
}

// EnableReuse switches on output recycling for the nodes of g whose values
// no one can hold across runs: nodes of Slotted ops, not in keep (the
// values a caller reads after a run: losses, logits, …), all of whose
// consumers are Slotted ops as well (this module's ops never keep, alias or
// overwrite an input; Gorgonia's stock ops may do all three). After it, the
// values of those nodes are valid until the next run. It returns the
// number of nodes switched on.
func EnableReuse(g *G.ExprGraph, keep G.Nodes) int {
	kept := map[*G.Node]bool{}
	for _, n := range keep {
		kept[n] = true
	}
	count := 0
	for _, n := range g.AllNodes() {
		s, ok := n.Op().(Slotted)
		if !ok || s.OutputSlot() == nil || kept[n] {
			continue
		}
		safe := true
		for it := g.To(n.ID()); it.Next(); {
			c, ok := it.Node().(*G.Node)
			if !ok {
				safe = false
				break
			}
			if cs, ok := c.Op().(Slotted); !ok || cs.OutputSlot() == nil {
				safe = false
				break
			}
		}
		if safe {
			s.OutputSlot().reuse = true
			count++
		}
	}
	return count
}

// DisableReuse switches output recycling off for every node of g (for
// measuring what it saves).
func DisableReuse(g *G.ExprGraph) {
	for _, n := range g.AllNodes() {
		if s, ok := n.Op().(Slotted); ok && s.OutputSlot() != nil {
			s.OutputSlot().reuse = false
			s.OutputSlot().data = nil
		}
	}
}
