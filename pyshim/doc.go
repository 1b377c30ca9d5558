// Package pyshim carries the Python package `rtrain` that workers import, and
// serves the agent's end of the channel it talks over.
//
// The Python sources under rtrain/ are embedded in the binary; Install writes
// them once to a content-addressed directory that the agent puts on each
// worker's PYTHONPATH, so nothing needs pip. The wire protocol is in
// PROTOCOL.md beside this file.
package pyshim
