// Package rendezvous computes how the workers of one attempt find each other:
// the torchrun environment contract each worker gets, and the free port rank 0
// listens on.
//
// The contract is torchrun's, variable for variable, so that a script written
// for torchrun (init_process_group("env://")) runs unchanged under rtrain.
// Everything here is a pure function of a Layout except FreePort, which asks
// the kernel.
package rendezvous
