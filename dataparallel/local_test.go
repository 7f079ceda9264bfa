package dataparallel_test

import (
	"sync"

	"github.com/lilygo/lily/dataparallel"
)

// onRanks runs f on every rank of a new group of n, concurrently, and
// returns the ranks' errors.
func onRanks(n int, f func(dataparallel.Comm) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r, c := range dataparallel.NewLocalGroup(n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = f(c)
		}()
	}
	wg.Wait()
	return errs
}
