package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster/clusterpb"
)

// Files cross between head and agents as streams of FileChunk: a
// checkpoint's staged files, a restore, the working directory.

// ChunkSize is how much of a file one message carries.
const ChunkSize = 1 << 20

type ChunkSender interface {
	Send(*clusterpb.FileChunk) error
}

// SendFile sends one file as chunks; the first names it.
func SendFile(stream ChunkSender, local, rel string) error {
	f, err := os.Open(local)
	if err != nil {
		return status.Errorf(codes.NotFound, "%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	buf := make([]byte, ChunkSize)
	first := true
	for {
		n, rerr := io.ReadFull(f, buf)
		if n > 0 || first {
			c := &clusterpb.FileChunk{Data: buf[:n]}
			if first {
				c.Path, c.Mode = rel, uint32(fi.Mode().Perm())
				first = false
			}
			if err := stream.Send(c); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// ReceiveFiles writes a stream of file chunks under dir, starting with
// first (which may be nil), until the stream ends.
func ReceiveFiles(dir string, first *clusterpb.FileChunk, recv func() (*clusterpb.FileChunk, error)) error {
	var f *os.File
	closeFile := func() error {
		if f == nil {
			return nil
		}
		err := f.Close()
		f = nil
		return err
	}
	defer closeFile()
	c := first
	for {
		if c == nil {
			var err error
			if c, err = recv(); err == io.EOF {
				return closeFile()
			} else if err != nil {
				return err
			}
		}
		if c.Path != "" {
			if err := closeFile(); err != nil {
				return err
			}
			if !LocalPath(c.Path) {
				return status.Errorf(codes.InvalidArgument, "file %q is outside its directory", c.Path)
			}
			target := filepath.Join(dir, filepath.FromSlash(c.Path))
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			var err error
			if f, err = os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fs.FileMode(c.Mode)&0o777|0o600); err != nil {
				return err
			}
		} else if f == nil && len(c.Data) > 0 {
			return status.Error(codes.InvalidArgument, "file data before any file name")
		}
		if f != nil && len(c.Data) > 0 {
			if _, err := f.Write(c.Data); err != nil {
				return err
			}
		}
		c = nil
	}
}

// SendTree sends every regular file under dir.
func SendTree(stream ChunkSender, dir string) error {
	files, err := ListFiles(dir)
	if err != nil {
		return fmt.Errorf("cluster: list %s: %w", dir, err)
	}
	for _, f := range files {
		if err := SendFile(stream, filepath.Join(dir, filepath.FromSlash(f)), path.Clean(f)); err != nil {
			return err
		}
	}
	return nil
}

// UntilClosed is ctx, also cancelled when done closes: a wait on a worker's
// behalf ends with the group's stop.
func UntilClosed(ctx context.Context, done <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// LocalPath reports whether a slash-separated relative path stays inside
// its directory.
func LocalPath(p string) bool { return p != "" && filepath.IsLocal(filepath.FromSlash(p)) }

func ListFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return files, err
}
