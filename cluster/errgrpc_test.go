package cluster_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/internal/errgrpc"
)

// overTheWire is err as a client of a server that returned it gets it:
// the status as bytes, read back.
func overTheWire(t *testing.T, err error) error {
	t.Helper()
	b, merr := proto.Marshal(status.Convert(errgrpc.ToGRPC(err)).Proto())
	require.NoError(t, merr)
	var p spb.Status
	require.NoError(t, proto.Unmarshal(b, &p))
	return errgrpc.FromGRPC(status.FromProto(&p).Err())
}

// A standby's refusal crosses as NOT_LEADER, Unavailable, with the
// leader's address when it knows it, and reads the same on both sides.
func TestNotLeaderCrossesWithTheLeader(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		leader string
		msg    string
	}{
		{"with a leader", cluster.NotLeader("10.0.0.1:6379"), "10.0.0.1:6379", "cluster: this head is a standby; the leader is at 10.0.0.1:6379"},
		{"no leader known", cluster.NotLeader(""), "", "cluster: this head is a standby and knows no leader yet"},
		{"wrapped", fmt.Errorf("submit: %w", cluster.NotLeader("h2:6379")), "h2:6379", "submit: cluster: this head is a standby; the leader is at h2:6379"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for side, err := range map[string]error{"here": tt.err, "over the wire": overTheWire(t, tt.err)} {
				assert.ErrorIs(t, err, cluster.ErrNotLeader, side)
				leader, ok := cluster.LeaderHint(err)
				assert.True(t, ok, side)
				assert.Equal(t, tt.leader, leader, "%s: leader", side)
				assert.Equal(t, tt.msg, err.Error(), side)
			}
			got := overTheWire(t, tt.err)
			assert.Equal(t, codes.Unavailable, status.Code(got), "code")
			assert.Equal(t, "NOT_LEADER", errgrpc.Reason(got))
			var nl *cluster.NotLeaderError
			require.ErrorAs(t, tt.err, &nl, "this side's error is the typed one")
			assert.Equal(t, tt.leader, nl.Leader)
		})
	}
}

// Other errors are no standby's refusal, whatever their code.
func TestLeaderHintOfOtherErrors(t *testing.T) {
	for _, err := range []error{
		nil,
		errors.New("cluster: this head is a standby; the leader is at h2:6379"),
		status.Error(codes.Unavailable, "connection refused"),
		overTheWire(t, fmt.Errorf("node n1: %w", cluster.ErrNodeLost)),
	} {
		leader, ok := cluster.LeaderHint(err)
		assert.False(t, ok, "%v", err)
		assert.Empty(t, leader)
	}
}
