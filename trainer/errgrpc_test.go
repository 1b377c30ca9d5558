package trainer_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/internal/errgrpc"
	"github.com/rtrain/rtrain/trainer"
)

// A job the head refuses as submitted is the client's ErrInvalidConfig,
// by the INVALID_CONFIG in the status details, so `rtrain fit --address`
// exits with the usage code as it does for its own checks.
func TestHeadRefusesAnInvalidJobByReason(t *testing.T) {
	_, c := remoteHead(t, head.Config{})
	dir := projectDir(t, 0)
	_, err := c.Submit(t.Context(), trainer.Config{Script: filepath.Join(dir, "train.py"), WorkingDir: dir, Workers: 1, Storage: t.TempDir()})
	require.ErrorIs(t, err, trainer.ErrInvalidConfig)
	assert.Equal(t, "INVALID_CONFIG", errgrpc.Reason(err))
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, err.Error(), "the head's results directory")
}
