// Package pyshim carries the Python package `rtrain` (the worker side that
// scripts and train functions import, and the driver side: TorchTrainer,
// rtrain.init), and serves the agent's end of the channel workers talk over.
//
// The Python sources under rtrain/ are embedded in the binary; Install writes
// them once to a content-addressed directory that the agent puts on each
// worker's PYTHONPATH, so workers need no pip. Drivers install the same
// sources as a wheel (make wheel) that carries the binary. The contracts
// (the worker channel, rtrain fit's --function and --result-json) are in
// PROTOCOL.md beside this file.
package pyshim
