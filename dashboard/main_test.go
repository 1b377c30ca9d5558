package dashboard_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/launcher"
)

// cgroupParent holds every cgroup the end-to-end test's jobs make.
var cgroupParent string

// The workers of the end-to-end test run under a reaper that re-executes
// this binary; goleak checks, after every test, that the dashboard, the
// head and the agent left no goroutine behind.
func TestMain(m *testing.M) {
	if launcher.RunReaperIfAsked() {
		return
	}
	code := testutil.RunIsolated(m, &cgroupParent)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}
