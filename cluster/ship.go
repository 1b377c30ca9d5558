package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/internal/errgrpc"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/internal/workdir"
)

// A job's working directory travels from the CLI to the head (SubmitJob)
// and from the head to each node (StartGroup) as a manifest, then its
// archive in chunks of ChunkSize: no message is larger than a chunk, so
// heads and agents take small messages only (MaxRequest). Each receiver
// refuses a manifest over its limits before reading the archive, and holds
// the archive to its manifest as it reads: the head stores no more than
// the manifest said, and a node unpacks no more than that (workdir.Limits).

// Workdir is a job's working directory as the head keeps it for the nodes:
// the archive in a file, and its manifest.
type Workdir struct {
	// Path is the archive's file on this machine.
	Path     string
	Manifest *clusterpb.WorkdirManifest
}

// ManifestOf is the manifest of a packed working directory.
func ManifestOf(a *workdir.Archive) *clusterpb.WorkdirManifest {
	return &clusterpb.WorkdirManifest{Digest: a.Digest, ArchiveBytes: int64(len(a.Data)),
		UnpackedBytes: a.Size, Entries: int64(a.Entries)}
}

// UnpackLimits are the limits a manifest holds its archive to.
func UnpackLimits(m *clusterpb.WorkdirManifest) workdir.Limits {
	return workdir.Limits{Bytes: m.GetUnpackedBytes(), Entries: int(m.GetEntries())}
}

// CheckManifest refuses, as a gRPC status, a manifest that is malformed,
// claims an archive larger than what it says it unpacks to can take, or
// unpacks to more than maxBytes or workdir.MaxEntries.
func CheckManifest(m *clusterpb.WorkdirManifest, maxBytes int64) error {
	switch {
	case m == nil:
		return status.Error(codes.InvalidArgument, "no working directory manifest")
	case m.ArchiveBytes < 0 || m.UnpackedBytes < 0 || m.Entries < 0:
		return status.Errorf(codes.InvalidArgument, "working directory manifest with a negative size: %v", m)
	case m.Entries > workdir.MaxEntries:
		return status.Errorf(codes.InvalidArgument, "the working directory holds %d files, directories and links, over the limit of %d", m.Entries, workdir.MaxEntries)
	case m.UnpackedBytes > maxBytes:
		// WORKDIR_TOO_LARGE, with the limit for the client to name what
		// to leave out.
		return errgrpc.ToGRPC(errgrpc.WithMetadata(&refusal{sentinel: workdir.ErrTooLarge,
			msg: fmt.Sprintf("the working directory is %s, over the %s this head accepts; add what the job does not need to %s, or start the head with a larger --max-working-dir",
				text.Bytes(m.UnpackedBytes), text.Bytes(maxBytes), workdir.DefaultIgnore)},
			map[string]string{"limit": strconv.FormatInt(maxBytes, 10)}))
	case m.ArchiveBytes > UnpackLimits(m).ArchiveBytes():
		return status.Errorf(codes.InvalidArgument, "a working directory of %d bytes in %d entries cannot take %d bytes packed", m.UnpackedBytes, m.Entries, m.ArchiveBytes)
	}
	return nil
}

// WorkdirLimit reports whether err is a head's refusal of a working
// directory over its limit, and the limit.
func WorkdirLimit(err error) (limit int64, ok bool) {
	err = errgrpc.FromGRPC(err)
	if !errors.Is(err, workdir.ErrTooLarge) {
		return 0, false
	}
	n, perr := strconv.ParseInt(errgrpc.Metadata(err)["limit"], 10, 64)
	return n, perr == nil
}

// ReceiveWorkdir checks the manifest m against maxBytes, then writes the
// archive that recv delivers in chunks (until io.EOF) into a new file in
// dir, stopping as soon as it is longer than m says. Its errors are gRPC
// statuses; on one, no file is left.
func ReceiveWorkdir(dir string, m *clusterpb.WorkdirManifest, maxBytes int64, recv func() ([]byte, error)) (Workdir, error) {
	if err := CheckManifest(m, maxBytes); err != nil {
		return Workdir{}, err
	}
	f, err := os.CreateTemp(dir, "workdir-*.tar.gz")
	if err != nil {
		return Workdir{}, status.Errorf(codes.Internal, "store the working directory: %v", err)
	}
	_, err = io.Copy(f, &ChunkReader{recv: recv, left: m.ArchiveBytes})
	if closeErr := f.Close(); err == nil && closeErr != nil {
		err = status.Errorf(codes.Internal, "store the working directory: %v", closeErr)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return Workdir{}, archiveError(err)
	}
	return Workdir{Path: f.Name(), Manifest: m}, nil
}

// archiveError is a failed read of an archive stream as a gRPC status.
func archiveError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return status.Error(codes.InvalidArgument, "the working directory's archive ended before its manifest's size")
	}
	return status.Errorf(codes.Internal, "working directory: %v", err)
}

// NewChunkReader reads the chunks recv delivers (io.EOF at the end) as
// one stream, which must be exactly size bytes long.
func NewChunkReader(size int64, recv func() ([]byte, error)) *ChunkReader {
	return &ChunkReader{recv: recv, left: size}
}

// ChunkReader fails past its size, and at an early io.EOF with
// io.ErrUnexpectedEOF.
type ChunkReader struct {
	recv func() ([]byte, error)
	left int64
	buf  []byte
}

func (c *ChunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		b, err := c.recv()
		if errors.Is(err, io.EOF) {
			if c.left > 0 {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		if int64(len(b)) > c.left {
			return 0, status.Error(codes.InvalidArgument, "the working directory's archive is longer than its manifest says")
		}
		c.left -= int64(len(b))
		c.buf = b
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// SendArchive sends what r reads in chunks of at most ChunkSize, each
// with send. It stops at the first error send returns.
func SendArchive(r io.Reader, send func(chunk []byte) error) error {
	for {
		// A buffer per chunk: gRPC may hold a message after Send returns.
		buf := make([]byte, ChunkSize)
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if sendErr := send(buf[:n]); sendErr != nil {
				return sendErr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// refusal prints as its message and matches its sentinel.
type refusal struct {
	sentinel error
	msg      string
}

func (e *refusal) Error() string        { return e.msg }
func (e *refusal) Is(target error) bool { return target == e.sentinel }
