// Package discover fingerprints this machine as a node: its cores, memory
// and GPUs (through NVML, or the /dev/nvidia* device nodes without it), the
// GPUs' use for heartbeats (GPUMonitor), and claims on GPUs that keep two
// rtrain processes on one machine off the same device (ClaimGPUs).
package discover
