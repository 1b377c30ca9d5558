package agent

import (
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two agents on one data directory would delete each other's working
// directories: the second is refused, naming the holder, until the first
// lets go.
func TestOneAgentADataDirectory(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDir(dir)
	require.NoError(t, err)
	_, err = lockDir(dir)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrDataDirInUse), "%v", err)
	assert.Contains(t, err.Error(), "pid "+strconv.Itoa(os.Getpid()))
	assert.Contains(t, err.Error(), "--data-dir")
	first.unlock()
	again, err := lockDir(dir)
	require.NoError(t, err)
	again.unlock()
}
