package workdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// maxLinks bounds the links followed resolving one path, as the kernel's
// ELOOP does.
const maxLinks = 40

// errOutside is a link leading out of the tree.
var errOutside = errors.New("leads outside the directory")

// checkInside follows rel (slash-separated, relative to root) the way the
// kernel would, link by link, and fails with errOutside if that ever goes
// above root or to an absolute path. A missing component ends the
// resolution (the kernel would stop there too), so a dangling link inside
// the tree passes. A lexical check alone is not enough: with sub/up -> ..
// the target sub/up/.. looks inside but is root's parent.
func checkInside(root, rel string) error {
	var cur []string // resolved, link-free components below root
	todo := strings.Split(rel, "/")
	followed := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return errOutside
			}
			cur = cur[:len(cur)-1]
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(path.Join(append(cur, c)...)))
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			// The kernel would stop here; check the rest lexically all
			// the same, in case the missing part appears later.
			return lexicallyInside(append(cur, append([]string{c}, todo...)...))
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = append(cur, c)
			continue
		}
		if followed++; followed > maxLinks {
			return fmt.Errorf("too many levels of links")
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if filepath.IsAbs(target) {
			return errOutside
		}
		todo = append(strings.Split(filepath.ToSlash(target), "/"), todo...)
	}
	return nil
}

// lexicallyInside checks segs, where none is a link, stays below the root.
func lexicallyInside(segs []string) error {
	depth := 0
	for _, s := range segs {
		switch s {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return errOutside
			}
		default:
			depth++
		}
	}
	return nil
}
