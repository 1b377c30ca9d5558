// Package checkpoint stores a training run's checkpoints durably and
// atomically on a local directory or S3-compatible object storage.
//
// A checkpoint is the directory a training script wrote, uploaded as is
// (relative paths kept) to
//
//	<storage>/<run>/checkpoint_000001/<files>
//
// plus a manifest, <storage>/<run>/checkpoint_000001/.rtrain_manifest.json,
// listing every file with its size and SHA-256, the metrics reported with
// it, the time and the world size. The manifest is the commit record: it is
// written last, after every file is stored and its size checked, and a
// checkpoint exists only while its manifest is present and parses. So a
// crash, a kill or a storage outage in the middle of Commit leaves at most
// a partial directory that List, Latest and Get never return, earlier
// checkpoints are never touched, and a later Commit of the same index
// replaces the partial directory. Deletion runs the other way round: the
// manifest goes first, then the files. Downloads read only the files the
// manifest lists and check each one's SHA-256.
//
// Open picks the backend from a location ("s3://bucket/prefix" or a local
// path); the backends live in checkpoint/file and checkpoint/s3 and meet
// the small Storage interface, which is all Run uses. One writer at a time
// per run name (the job's driver): Lock takes the run's lease (an flock on
// a directory, a conditional put of a lease object on S3, both optional
// capabilities of a Storage), which refuses a second writer until the
// first lets go or, having crashed, its lease lapses. Readers need no
// lease and may list and download concurrently. Restore, which a run
// resumes with, passes over a committed checkpoint whose files turn out
// damaged to the newest intact one before it, and says so.
package checkpoint
