// Package pyenv gives a Python that has the rtrain wheel installed, as a
// user would install it: an rtrain binary, the wheel
// scripts/build-wheel.py makes of it, and a venv (with Debian's system
// packages, torch among them) that pip installed the wheel into.
//
// Install does it for a given binary (rtrain-bench's driver benchmark, for
// the binary it measures). Venv does it for tests, with the binary built
// from this tree, once per test binary, in a temporary directory that
// Cleanup removes; call it from TestMain:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) { pyenv.Cleanup(); os.Exit(code) }))
//	}
//
// Venv skips its test in -short mode; on a machine without python3-venv or
// python3-pip it skips it too, but fails it when CI is set, as testutil's
// helpers do.
package pyenv
