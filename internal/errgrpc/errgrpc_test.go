package errgrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The sentinels of these tests, registered as a package would.
var (
	errRefused = Register(errors.New("test: refused"), codes.FailedPrecondition, "TEST_REFUSED")
	errTooBig  = Register(errors.New("test: too big"), codes.ResourceExhausted, "TEST_TOO_BIG")
	errOther   = errors.New("test: never registered")
)

// bigError prints as its message alone and matches errTooBig, as the
// typed errors of rtrain's packages do.
type bigError struct{ msg string }

func (e *bigError) Error() string        { return e.msg }
func (e *bigError) Is(target error) bool { return target == errTooBig }

// infos is the rtrain ErrorInfo details of err's status.
func infos(t *testing.T, err error) []*errdetails.ErrorInfo {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "%v is a status", err)
	var out []*errdetails.ErrorInfo
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			out = append(out, info)
		}
	}
	return out
}

func info(reason string, md map[string]string) *errdetails.ErrorInfo {
	return &errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: md}
}

func TestToGRPC(t *testing.T) {
	withInfo, err := status.New(codes.ResourceExhausted, "a handler's own").WithDetails(info("TEST_TOO_BIG", nil))
	require.NoError(t, err)
	tests := []struct {
		name  string
		err   error
		code  codes.Code
		msg   string
		infos []*errdetails.ErrorInfo
	}{
		{name: "wrapped sentinel", err: fmt.Errorf("node n1: %w", errRefused),
			code: codes.FailedPrecondition, msg: "node n1: test: refused", infos: []*errdetails.ErrorInfo{info("TEST_REFUSED", nil)}},
		{name: "typed error that matches a sentinel", err: &bigError{"the directory is 2 MiB, over 1 MiB"},
			code: codes.ResourceExhausted, msg: "the directory is 2 MiB, over 1 MiB", infos: []*errdetails.ErrorInfo{info("TEST_TOO_BIG", nil)}},
		{name: "with metadata", err: WithMetadata(&bigError{"too big"}, map[string]string{"limit": "1024"}),
			code: codes.ResourceExhausted, msg: "too big", infos: []*errdetails.ErrorInfo{info("TEST_TOO_BIG", map[string]string{"limit": "1024"})}},
		{name: "two sentinels: the first registered gives the code", err: fmt.Errorf("%w: %w", &bigError{"big"}, errRefused),
			code: codes.FailedPrecondition, msg: "big: test: refused", infos: []*errdetails.ErrorInfo{info("TEST_REFUSED", nil), info("TEST_TOO_BIG", nil)}},
		{name: "unregistered", err: fmt.Errorf("x: %w", errOther), code: codes.Unknown, msg: "x: test: never registered"},
		{name: "a handler's status", err: status.Error(codes.NotFound, "no job \"j\""), code: codes.NotFound, msg: "no job \"j\""},
		{name: "a status with details keeps them", err: withInfo.Err(),
			code: codes.ResourceExhausted, msg: "a handler's own", infos: []*errdetails.ErrorInfo{info("TEST_TOO_BIG", nil)}},
		{name: "cancelled", err: fmt.Errorf("wait: %w", context.Canceled), code: codes.Canceled, msg: "wait: context canceled"},
		{name: "deadline", err: context.DeadlineExceeded, code: codes.DeadlineExceeded, msg: "context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToGRPC(tt.err)
			st, ok := status.FromError(got)
			require.True(t, ok, "%v is a status", got)
			assert.Equal(t, tt.code, st.Code(), "code")
			assert.Equal(t, tt.msg, st.Message(), "message")
			if diff := cmp.Diff(tt.infos, infos(t, got), cmpProto); diff != "" {
				t.Errorf("ErrorInfo (-want +got):\n%s", diff)
			}
			assert.Equal(t, got, ToGRPC(got), "ToGRPC of its own result")
		})
	}
	assert.NoError(t, ToGRPC(nil))
}

// cmpProto compares ErrorInfos by their fields.
var cmpProto = cmp.Comparer(func(a, b *errdetails.ErrorInfo) bool {
	return a.GetReason() == b.GetReason() && a.GetDomain() == b.GetDomain() && cmp.Equal(a.GetMetadata(), b.GetMetadata())
})

func TestFromGRPC(t *testing.T) {
	with := func(code codes.Code, msg string, details ...*errdetails.ErrorInfo) error {
		st := status.New(code, msg)
		for _, d := range details {
			var err error
			st, err = st.WithDetails(d)
			require.NoError(t, err)
		}
		return st.Err()
	}
	tests := []struct {
		name   string
		err    error
		is     []error // the sentinels it matches
		isNot  []error
		msg    string
		code   codes.Code
		reason string
		md     map[string]string
	}{
		{name: "reason", err: with(codes.FailedPrecondition, "rtrain version mismatch: this side runs v2", info("TEST_REFUSED", nil)),
			is: []error{errRefused}, isNot: []error{errTooBig}, msg: "rtrain version mismatch: this side runs v2", code: codes.FailedPrecondition, reason: "TEST_REFUSED"},
		{name: "the reason, not the code", err: with(codes.Internal, "refused", info("TEST_REFUSED", nil)),
			is: []error{errRefused}, msg: "refused", code: codes.Internal, reason: "TEST_REFUSED"},
		{name: "the reason, not the message", err: with(codes.FailedPrecondition, "test: refused"),
			isNot: []error{errRefused}, msg: "test: refused", code: codes.FailedPrecondition},
		{name: "metadata", err: with(codes.ResourceExhausted, "too big", info("TEST_TOO_BIG", map[string]string{"limit": "7"})),
			is: []error{errTooBig}, msg: "too big", code: codes.ResourceExhausted, reason: "TEST_TOO_BIG", md: map[string]string{"limit": "7"}},
		{name: "two reasons", err: with(codes.FailedPrecondition, "both", info("TEST_REFUSED", nil), info("TEST_TOO_BIG", nil)),
			is: []error{errRefused, errTooBig}, msg: "both", code: codes.FailedPrecondition, reason: "TEST_REFUSED"},
		{name: "another domain", err: with(codes.FailedPrecondition, "theirs", &errdetails.ErrorInfo{Reason: "TEST_REFUSED", Domain: "example.com"}),
			isNot: []error{errRefused}, msg: "theirs", code: codes.FailedPrecondition},
		{name: "a reason this side does not know", err: with(codes.Aborted, "newer", info("TEST_FROM_A_NEWER_VERSION", nil)),
			isNot: []error{errRefused, errTooBig}, msg: "newer", code: codes.Aborted, reason: "TEST_FROM_A_NEWER_VERSION"},
		{name: "cancelled", err: status.Error(codes.Canceled, "context canceled"),
			is: []error{context.Canceled}, isNot: []error{context.DeadlineExceeded}, msg: "context canceled", code: codes.Canceled},
		{name: "deadline", err: status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			is: []error{context.DeadlineExceeded}, msg: "context deadline exceeded", code: codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromGRPC(tt.err)
			for _, s := range tt.is {
				assert.ErrorIs(t, got, s)
			}
			for _, s := range tt.isNot {
				assert.NotErrorIs(t, got, s)
			}
			assert.Equal(t, tt.msg, got.Error(), "message")
			assert.Equal(t, tt.code, status.Code(got), "code")
			assert.Equal(t, tt.reason, Reason(got), "reason")
			assert.Equal(t, tt.md, Metadata(got), "metadata")
			wrapped := fmt.Errorf("call: %w", got)
			assert.Same(t, wrapped, FromGRPC(wrapped), "FromGRPC of its own result, wrapped")
		})
	}
	assert.NoError(t, FromGRPC(nil))
	assert.Same(t, io.EOF, FromGRPC(io.EOF), "an error that is no status")
}

// Both directions in one: the error a handler returns is the error its
// caller gets, for errors.Is, over real gRPC with the interceptors.
func TestOverGRPC(t *testing.T) {
	var handlerErr error
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(UnaryServerInterceptor), grpc.ChainStreamInterceptor(StreamServerInterceptor),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error { return handlerErr }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(UnaryClientInterceptor), grpc.WithChainStreamInterceptor(StreamClientInterceptor))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	tests := []struct {
		name  string
		err   error
		is    error
		isNot error
		msg   string
		md    map[string]string
	}{
		{name: "sentinel", err: fmt.Errorf("node n1: %w", errRefused), is: errRefused, isNot: errTooBig, msg: "node n1: test: refused"},
		{name: "typed, with metadata", err: WithMetadata(&bigError{"2 MiB, over 1 MiB"}, map[string]string{"limit": "1048576"}),
			is: errTooBig, isNot: errRefused, msg: "2 MiB, over 1 MiB", md: map[string]string{"limit": "1048576"}},
		{name: "unregistered", err: errOther, isNot: errOther, msg: "test: never registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handlerErr = tt.err
			err := conn.Invoke(t.Context(), "/test.Service/Unary", &emptypb.Empty{}, &emptypb.Empty{})
			stream, serr := conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, "/test.Service/Stream")
			require.NoError(t, serr)
			require.NoError(t, stream.SendMsg(&emptypb.Empty{}))
			require.NoError(t, stream.CloseSend())
			streamErr := stream.RecvMsg(&emptypb.Empty{})
			for what, err := range map[string]error{"unary": err, "stream": streamErr} {
				if tt.is != nil {
					assert.ErrorIs(t, err, tt.is, what)
				}
				assert.NotErrorIs(t, err, tt.isNot, what)
				assert.Equal(t, tt.msg, err.Error(), what)
				assert.Equal(t, tt.md, Metadata(err), what)
			}
		})
	}

	handlerErr = nil
	stream, err := conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, "/test.Service/Stream")
	require.NoError(t, err)
	require.NoError(t, stream.CloseSend())
	assert.Same(t, io.EOF, stream.RecvMsg(&emptypb.Empty{}), "a stream's end stays io.EOF")
}

func TestRegisterRefusesTwice(t *testing.T) {
	assert.Panics(t, func() { Register(errors.New("test: again"), codes.Internal, "TEST_REFUSED") }, "a reason twice")
	assert.Panics(t, func() { Register(errRefused, codes.Internal, "TEST_REFUSED_AGAIN") }, "a sentinel twice")
	assert.Panics(t, func() { Register(errors.New("test: ok"), codes.OK, "TEST_OK") }, "codes.OK")
	assert.Panics(t, func() { Register(errors.New("test: no reason"), codes.Internal, "") }, "no reason")
}
