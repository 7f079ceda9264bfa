package train

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Progress is a terminal progress bar showing step, loss, learning rate and
// the estimated time left.
type Progress struct {
	bar *progressbar.ProgressBar
}

// NewProgress starts a bar of total steps writing to w (os.Stderr if nil).
func NewProgress(total int, desc string, w io.Writer) *Progress {
	if w == nil {
		w = os.Stderr
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(20),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
	return &Progress{bar: bar}
}

// Step advances the bar by one step and shows the latest loss and rate.
func (p *Progress) Step(desc string, loss, lr float64) {
	p.bar.Describe(fmt.Sprintf("%s loss %.4f lr %.2e", desc, loss, lr))
	p.bar.Add(1)
}

// Finish completes the bar.
func (p *Progress) Finish() { p.bar.Finish() }

// Skip advances the bar by steps done earlier (a resumed run's).
func (p *Progress) Skip(steps int) {
	if steps > 0 {
		p.bar.Set(steps)
	}
}
