// Package trainer is rtrain's public Go API and the job coordinator behind
// `rtrain fit`.
//
// A Config says what to run and on what; New checks it and starts nothing;
// Fit runs the job to its end and returns a Result. With no cluster address
// Fit starts an embedded head and agent in this process (package cluster), so
// one machine needs no setup. Everything the job does is delivered to
// Config.OnEvent as it happens: state changes, worker starts, log lines,
// metric reports, committed checkpoints, worker exits (see Event for the
// order). Checkpoints go to Config.Storage, a local directory or S3, and a
// run resumes from them with Config.Resume or Config.ResumeFrom.
//
// docs/embedding.md in the repository is the guide; examples/embed is a
// complete program.
//
// When a job fails, Fit's error is a *JobError naming the rank that failed
// first, how it ended and the end of its Python traceback; the ranks rtrain
// stopped because of it are listed apart.
package trainer
