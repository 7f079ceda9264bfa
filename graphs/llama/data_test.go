package llama

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedData returns the path of a file under the shared data folder beside
// the repository checkout, skipping the test when it is missing (and
// failing it under CI=true).
func sharedData(t testing.TB, rel string) string {
	t.Helper()
	dir, err := filepath.Abs("../../../shared/data")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("test data missing under CI: %v", err)
		}
		t.Skipf("test data missing: %v", err)
	}
	return p
}
