package cgroup

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What a launcher killed with its reapers left (empty groups and their
// job directories) goes; a group with a process, a fresh one and the top
// stay.
func TestSweepRemovesOnlyIdleEmptyGroups(t *testing.T) {
	l := requireCgroups(t)
	top := testTop(t, l)
	dead := newGroup(t, l, Spec{Name: top + "/job-a/n1-attempt-0/rank-0"})
	live := newGroup(t, l, Spec{Name: top + "/job-b/n1-attempt-0/rank-0"})
	startChild(t, live.Path(), "", "node", "0", "0", "0").pids(1)

	n, err := sweep(l, top, time.Hour)
	require.NoError(t, err)
	assert.Zero(t, n, "groups changed within the idle time stay: a launcher may be setting them up")

	n, err = sweep(l, top, 0)
	require.NoError(t, err)
	assert.Equal(t, 3*len(l.roots()), n, "rank, attempt and job directories in every hierarchy")
	for _, root := range l.roots() {
		assert.NoDirExists(t, filepath.Join(root, dead.Path()))
		assert.NoDirExists(t, filepath.Join(root, top, "job-a"))
		assert.DirExists(t, filepath.Join(root, live.Path()), "a group with a process")
		_, err := os.Stat(filepath.Join(root, top))
		assert.NoError(t, err, "the top is not swept")
	}
}
