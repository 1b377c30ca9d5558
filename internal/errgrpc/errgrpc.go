package errgrpc

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of rtrain's reasons.
const Domain = "rtrain"

type entry struct {
	sentinel error
	code     codes.Code
	reason   string
}

// registry holds the registered sentinels, in registration order, and
// them by reason. Registration happens as packages initialize; conversions
// only read it.
var registry struct {
	sync.RWMutex
	entries  []entry
	byReason map[string]entry
}

// Register names sentinel on the wire: ToGRPC sends an error that matches
// it (errors.Is) with code and an ErrorInfo of reason, and FromGRPC's
// error for that reason matches it. A package registers the sentinels its
// servers send in an init function, one table of its reasons:
//
//	func init() {
//		errgrpc.Register(ErrNodeLost, codes.Aborted, "NODE_LOST")
//	}
//
// A reason is UPPER_SNAKE_CASE and names one sentinel: registering a
// reason or a sentinel twice panics, as does an empty reason or codes.OK.
// It returns sentinel.
func Register(sentinel error, code codes.Code, reason string) error {
	if sentinel == nil || reason == "" || code == codes.OK {
		panic(fmt.Sprintf("errgrpc: Register(%v, %v, %q): need a sentinel, a reason and a code other than OK", sentinel, code, reason))
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.byReason[reason]; dup {
		panic("errgrpc: reason " + reason + " registered twice")
	}
	for _, e := range registry.entries {
		if e.sentinel == sentinel {
			panic(fmt.Sprintf("errgrpc: %v registered twice (%s, %s)", sentinel, e.reason, reason))
		}
	}
	if registry.byReason == nil {
		registry.byReason = map[string]entry{}
	}
	e := entry{sentinel: sentinel, code: code, reason: reason}
	registry.entries = append(registry.entries, e)
	registry.byReason[reason] = e
	return sentinel
}

// matching is the registered entries err matches, in registration order.
func matching(err error) []entry {
	registry.RLock()
	defer registry.RUnlock()
	var out []entry
	for _, e := range registry.entries {
		if errors.Is(err, e.sentinel) {
			out = append(out, e)
		}
	}
	return out
}

// ToGRPC is err as a server returns it. An error that matches registered
// sentinels becomes a status with its message, the code of the first of
// them to have been registered (a package's dependencies register first),
// and an ErrorInfo for each, in Domain, carrying err's Metadata. Any other
// error keeps the status it holds (a call's own, or one a handler built);
// a context's error becomes codes.Canceled or DeadlineExceeded; the rest
// codes.Unknown, as grpc-go would send it. ToGRPC of nil is nil, and of
// its own result that result.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if m := matching(err); len(m) > 0 {
		st := status.New(m[0].code, err.Error())
		md := Metadata(err)
		for _, e := range m {
			// Only an OK status refuses details, and Register refuses OK.
			if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: e.reason, Domain: Domain, Metadata: md}); derr == nil {
				st = d
			}
		}
		return st.Err()
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.New(codes.Unknown, err.Error()).Err()
}

// FromGRPC is err as a client gets it: a status becomes an error that
// prints as the other side's message, matches with errors.Is the
// registered sentinels its ErrorInfo reasons name (and context.Canceled or
// DeadlineExceeded for those codes), gives back the ErrorInfo's Metadata,
// and keeps its status for status.Code. An error that is no status
// (io.EOF, nil) or that FromGRPC made already is returned as it is.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	var re *remoteError
	if errors.As(err, &re) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	re = &remoteError{st: st}
	registry.RLock()
	defer registry.RUnlock()
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != Domain {
			continue
		}
		if re.reason == "" {
			re.reason, re.md = info.GetReason(), info.GetMetadata()
		}
		if e, ok := registry.byReason[info.GetReason()]; ok {
			re.sentinels = append(re.sentinels, e.sentinel)
		}
	}
	return re
}

// Reason is the reason err travels under: that of the first registered
// sentinel it matches, or the first one the other side sent; "" when none.
func Reason(err error) string {
	var re *remoteError
	if errors.As(err, &re) && re.reason != "" {
		return re.reason
	}
	if m := matching(err); len(m) > 0 {
		return m[0].reason
	}
	return ""
}

// WithMetadata is err with md, which ToGRPC sends in err's ErrorInfo
// (a working directory refused for its size, with the limit) and the other
// side reads with Metadata.
func WithMetadata(err error, md map[string]string) error {
	if err == nil {
		return nil
	}
	return &withMetadata{err: err, md: md}
}

// Metadata is the metadata of err's ErrorInfo: WithMetadata's, or the
// other side's; nil when it has none.
func Metadata(err error) map[string]string {
	var m interface{ errorMetadata() map[string]string }
	if errors.As(err, &m) {
		return m.errorMetadata()
	}
	return nil
}

type withMetadata struct {
	err error
	md  map[string]string
}

func (e *withMetadata) Error() string                    { return e.err.Error() }
func (e *withMetadata) Unwrap() error                    { return e.err }
func (e *withMetadata) errorMetadata() map[string]string { return e.md }

// remoteError is a status that FromGRPC read.
type remoteError struct {
	st        *status.Status
	reason    string
	md        map[string]string
	sentinels []error
}

func (e *remoteError) Error() string                    { return e.st.Message() }
func (e *remoteError) GRPCStatus() *status.Status       { return e.st }
func (e *remoteError) errorMetadata() map[string]string { return e.md }

func (e *remoteError) Is(target error) bool {
	for _, s := range e.sentinels {
		if s == target {
			return true
		}
	}
	switch e.st.Code() {
	case codes.Canceled:
		return target == context.Canceled
	case codes.DeadlineExceeded:
		return target == context.DeadlineExceeded
	}
	return false
}
