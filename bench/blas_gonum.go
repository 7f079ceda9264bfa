//go:build !openblas

package bench

// UseOpenBLASThreads reports false: this build has no OpenBLAS.
func UseOpenBLASThreads() bool { return false }

func resetOpenBLASThreads() {}
