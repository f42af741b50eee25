package crosscheck

import "testing"

func testWrappedTunnels(t *testing.T, path string) {}
