// Package clusterpb is the generated gRPC code of cluster.proto: the head
// and agent services. Never edit it by hand; `make proto` regenerates it.
package clusterpb
