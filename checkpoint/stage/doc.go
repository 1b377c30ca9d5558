// Package stage keeps the files workers report with a checkpoint on their
// node's disk (Area) until the checkpoint is committed to storage: the
// ranks' files are merged into one directory per report, and the number of
// reports in flight is bounded so a slow upload holds training back rather
// than filling the disk.
package stage
