package trainer_test

import (
	"os"
	"testing"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/launcher"
)

// cgroupParent holds every cgroup this package's jobs make.
var cgroupParent string

func TestMain(m *testing.M) {
	if launcher.RunReaperIfAsked() {
		return
	}
	os.Exit(testutil.RunIsolated(m, &cgroupParent))
}
