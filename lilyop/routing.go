package lilyop

import (
	"fmt"
	"strings"

	"github.com/pkg/errors"
)

// Routing selects how Lily's router turns per-token softmax probabilities
// into mixing weights for the shared B experts.
type Routing int

const (
	// Batch averages the router probabilities over every token of the batch
	// into one mixing vector [E]: the behaviour of the paper's code and of
	// Hugging Face PEFT, and the default. Without a mask, padding tokens are
	// averaged too, exactly as the reference does.
	Batch Routing = iota
	// Sequence averages over each sequence's real (unmasked) tokens only,
	// giving one mixing vector per sequence [batch, E]: an example's output
	// no longer depends on its batch mates or on padding.
	Sequence
	// Token gives every token its own mixing vector [..., E], as in the
	// paper's Vision-Mamba variant. It costs E times more in the mixture.
	Token
)

// String returns the routing mode's flag spelling.
func (r Routing) String() string {
	switch r {
	case Batch:
		return "batch"
	case Sequence:
		return "sequence"
	case Token:
		return "token"
	}
	return fmt.Sprintf("routing(%d)", int(r))
}

// ParseRouting reads a routing mode as spelled on the command line:
// "batch", "sequence" or "token".
func ParseRouting(s string) (Routing, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "batch", "":
		return Batch, nil
	case "sequence", "seq":
		return Sequence, nil
	case "token":
		return Token, nil
	}
	return Batch, errors.Errorf("unknown routing mode %q: use batch, sequence or token", s)
}

// MarshalText writes the routing mode's name (for JSON configs).
func (r Routing) MarshalText() ([]byte, error) {
	if r < Batch || r > Token {
		return nil, errors.Errorf("invalid routing mode %d", int(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText reads a routing mode's name (for JSON configs).
func (r *Routing) UnmarshalText(b []byte) error {
	v, err := ParseRouting(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// groups returns, for a routing mode, m rows of h and h's first dimension,
// the number of mixing vectors s and the number of consecutive rows each one
// covers. Token routing has one group per row.
func groups(mode Routing, m int, lead0 int) (s, per int) {
	switch mode {
	case Sequence:
		return lead0, m / lead0
	case Token:
		return m, 1
	}
	return 1, m
}
