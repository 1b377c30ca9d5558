// Package errgrpc is rtrain's one error boundary across processes, as
// containerd's errgrpc: a sentinel error leaves a server as a gRPC status
// whose code and errdetails.ErrorInfo{Reason, Domain: "rtrain"} name it
// (ToGRPC), and reaches the client as an error that matches the same
// sentinel with errors.Is and prints the server's one-line message
// (FromGRPC). Clients branch on the reason, never on the status message.
//
// Each package registers the sentinels its servers send (Register, in an
// init function: cluster's errgrpc.go, trainer's), so this package imports
// none of rtrain's and any of them may use it without an import cycle.
// cluster.Security installs the interceptors on every server and client
// connection rtrain makes: a handler returns its domain errors as they
// are, and a caller gets them back as the sentinels.
//
// The reasons are part of the protocol between rtrain versions;
// cluster.proto lists them.
package errgrpc
