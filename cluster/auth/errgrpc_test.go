package auth

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/errgrpc"
	"github.com/rtrain/rtrain/internal/version"
	"github.com/rtrain/rtrain/internal/workdir"
)

// Every sentinel cluster sends crosses with its code and reason, and comes
// back as itself and no other.
func TestClusterSentinelsCrossWithTheirReasons(t *testing.T) {
	sentinels := []struct {
		err    error
		code   codes.Code
		reason string
	}{
		{ErrUnauthenticated, codes.Unauthenticated, "UNAUTHENTICATED"},
		{ErrVersionMismatch, codes.FailedPrecondition, "VERSION_MISMATCH"},
		{cluster.ErrNotIsolated, codes.FailedPrecondition, "NOT_ISOLATED"},
		{cluster.ErrNodeLost, codes.Aborted, "NODE_LOST"},
		{sched.ErrInfeasible, codes.FailedPrecondition, "INFEASIBLE"},
		{sched.ErrWouldWait, codes.ResourceExhausted, "WOULD_WAIT"},
		{workdir.ErrTooLarge, codes.ResourceExhausted, "WORKDIR_TOO_LARGE"},
	}
	for _, tt := range sentinels {
		t.Run(tt.reason, func(t *testing.T) {
			sent := errgrpc.ToGRPC(fmt.Errorf("node n1: %w", tt.err))
			st := status.Convert(sent)
			assert.Equal(t, tt.code, st.Code(), "code")
			assert.Equal(t, "node n1: "+tt.err.Error(), st.Message())
			got := errgrpc.FromGRPC(sent)
			assert.Equal(t, tt.reason, errgrpc.Reason(got))
			for _, other := range sentinels {
				assert.Equal(t, other.err == tt.err, errors.Is(got, other.err), "errors.Is(%s, %s)", tt.reason, other.reason)
			}
		})
	}
}

// reasonOf is the rtrain reason in err's status details, read from the
// status itself.
func reasonOf(t *testing.T, err error) string {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "%v is a status", err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errgrpc.Domain {
			return info.Reason
		}
	}
	return ""
}

// A refused call says why in its status details, and the client's error
// is the sentinel by that reason: a status that only reads like a refusal
// is not one.
func TestRefusedCallsCarryTheirReason(t *testing.T) {
	addr := serveHead(t, Security{Token: "s3cret"})
	raw, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.Close() })
	head := clusterpb.NewHeadClient(raw)
	for _, tt := range []struct {
		name     string
		md       []string
		sentinel error
		reason   string
	}{
		{"no token", []string{versionKey, version.Version}, ErrUnauthenticated, "UNAUTHENTICATED"},
		{"wrong token", []string{versionKey, version.Version, authKey, "Bearer guess"}, ErrUnauthenticated, "UNAUTHENTICATED"},
		{"other version", []string{versionKey, "v0.0.1", authKey, "Bearer s3cret"}, ErrVersionMismatch, "VERSION_MISMATCH"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(t.Context(), tt.md...)
			_, err := head.Status(ctx, &clusterpb.StatusRequest{})
			assert.Equal(t, tt.reason, reasonOf(t, err), "the reason in the status details")
			assert.ErrorIs(t, RemoteError(err), tt.sentinel)
		})
	}

	// The message alone, as a peer without the reason would send it,
	// names no sentinel.
	lookalike := status.Error(codes.FailedPrecondition, "rtrain version mismatch: this side runs v2, the caller runs v1")
	assert.NotErrorIs(t, RemoteError(lookalike), ErrVersionMismatch)
	assert.Equal(t, "rtrain version mismatch: this side runs v2, the caller runs v1", RemoteError(lookalike).Error())

	// A connection of Security's gets the sentinel from the call itself.
	conn, err := Security{Token: "guess"}.Dial(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = clusterpb.NewHeadClient(conn).Status(t.Context(), &clusterpb.StatusRequest{})
	assert.ErrorIs(t, err, ErrUnauthenticated)
	assert.Equal(t, "wrong cluster token: pass the head's token with --token or "+TokenEnv, err.Error())
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "the code stays")
}
