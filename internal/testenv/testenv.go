// Package testenv decides what a test does when something it needs from the
// machine (root, a tool, a built image) is missing. On a developer's machine
// it skips with the reason; in CI (CI set in the environment), where
// scripts/provision.sh installs everything, a missing piece is a provisioning
// bug, so the test fails instead of passing silently.
package testenv

import (
	"os"
	"testing"
)

// InCI reports whether the tests run in CI.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// Missing skips the test, or fails it in CI, with the reason.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI provisions everything, yet: "+format, args...)
	}
	t.Skipf(format, args...)
}
