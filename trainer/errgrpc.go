package trainer

import (
	"google.golang.org/grpc/codes"

	"github.com/rtrain/rtrain/internal/errgrpc"
)

// The reasons under which the sentinels that the head's job service sends
// travel to its clients (errgrpc; cluster registers the cluster's). Never
// rename one: other rtrain versions read them.
func init() {
	// A job the head refuses as submitted (its storage outside the
	// head's roots, a run of that name already running): the client
	// exits with its usage code, as for its own checks.
	errgrpc.Register(ErrInvalidConfig, codes.InvalidArgument, "INVALID_CONFIG")
}
