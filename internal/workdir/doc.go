// Package workdir ships a job's working directory to the nodes that run its
// workers, like Ray's runtime_env working_dir: Pack turns a directory into a
// compressed archive with a digest on the submitting side; Unpack unpacks
// it on each node, checking the digest.
//
// # What is packed
//
// Directories, regular files and symbolic links, with their permission
// bits; owners, times and set-id bits are not kept. A link is kept as a
// link; one that leads outside the directory (an absolute target, or one
// that climbs out through .. or through other links) cannot work on another
// node, so it is left out and listed in Archive.Skipped with the reason,
// as are sockets, devices and pipes. Pack does not fail for them because
// directories such as Python virtual environments are full of absolute
// links that a job does not need shipped.
//
// Left out too are the paths that the ignore file (.rtrainignore by
// default, in the directory's root) names with gitignore-like patterns, and
// by default, before the file's own patterns (so that a "!" pattern can
// take one back): .git, __pycache__/, *.pyc, .rtrain-staging and
// rtrain_results/. The patterns support comments (#), blank lines, *, ?,
// [...] classes, ** (any number of directories), a trailing / (directories
// only), a leading or inner / (anchored to the root; otherwise a pattern
// matches a name at any depth), ! (negation; the last matching pattern
// wins) and \ to escape a leading # or !. As in git, nothing inside an
// ignored directory can be taken back.
//
// # Digest and determinism
//
// The archive holds its entries in lexical order with fixed times and
// owners, so the same tree gives the same bytes and the same digest. The
// digest is the SHA-256 of the uncompressed tar stream, so it names the
// content whatever the compressor; Unpack checks it while unpacking.
//
// # Size limit
//
// The regular files' total size, before compression, is capped
// (Options.MaxBytes, 100 MiB by default) so that a forgotten data set does
// not travel to every node with every job, and so are the entries
// (MaxEntries). Over a limit, Pack fails with a *TooLargeError whose
// message names the largest entries and what to do.
//
// Unpack is held to Limits too, which the sender states from its
// Archive's Size and Entries: an archive that would unpack to more (a
// small gzip of zeros that fills the disk) fails with an *OverLimitError
// before anything past the limits is written, and what was written is
// removed.
//
// # Safety
//
// Unpack treats the archive as hostile: it rejects absolute names, names
// with .., hard links, devices and duplicate entries, writes files only
// with O_NOFOLLOW|O_EXCL into a directory that holds no links while files
// are written, and creates links last, checking that each one resolves
// inside the destination, links included.
package workdir
