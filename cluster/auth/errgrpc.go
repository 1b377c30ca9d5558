package auth

import (
	"google.golang.org/grpc/codes"

	"github.com/rtrain/rtrain/internal/errgrpc"
)

// The reasons under which auth's refusals travel (see cluster/errgrpc.go
// for the others): never rename one.
func init() {
	errgrpc.Register(ErrUnauthenticated, codes.Unauthenticated, "UNAUTHENTICATED")
	errgrpc.Register(ErrVersionMismatch, codes.FailedPrecondition, "VERSION_MISMATCH")
}
