package errgrpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// UnaryServerInterceptor sends every error a handler returns through
// ToGRPC, so a handler may return its domain errors as they are.
func UnaryServerInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, ToGRPC(err)
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func StreamServerInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return ToGRPC(handler(srv, ss))
}

// UnaryClientInterceptor turns every error of a call with FromGRPC, so a
// caller tests it with errors.Is against the sentinels.
func UnaryClientInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return FromGRPC(invoker(ctx, method, req, reply, cc, opts...))
}

// StreamClientInterceptor is UnaryClientInterceptor for streams: the
// errors of opening the stream and of each Send, Recv, CloseSend and
// Header. io.EOF stays io.EOF.
func StreamClientInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, FromGRPC(err)
	}
	return clientStream{cs}, nil
}

type clientStream struct{ grpc.ClientStream }

func (s clientStream) SendMsg(m any) error { return FromGRPC(s.ClientStream.SendMsg(m)) }
func (s clientStream) RecvMsg(m any) error { return FromGRPC(s.ClientStream.RecvMsg(m)) }
func (s clientStream) CloseSend() error    { return FromGRPC(s.ClientStream.CloseSend()) }

func (s clientStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	return md, FromGRPC(err)
}
