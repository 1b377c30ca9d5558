package trainer_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/launcher"
)

// cgroupParent holds every cgroup this package's jobs make.
var cgroupParent string

// goleak checks, once every test has run, that the jobs, their clusters and
// the head left no goroutine behind.
func TestMain(m *testing.M) {
	if launcher.RunReaperIfAsked() {
		return
	}
	goleak.VerifyTestMain(isolated{m})
}

// isolated runs the tests in their own cgroup parent, which it removes
// before goleak looks.
type isolated struct{ m *testing.M }

func (i isolated) Run() int { return testutil.RunIsolated(i.m, &cgroupParent) }
