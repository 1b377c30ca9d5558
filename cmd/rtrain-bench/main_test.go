package main

import (
	"testing"

	"go.uber.org/goleak"
)

// goleak checks, once every test has run, that no benchmark section left a
// goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
