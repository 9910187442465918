package vmtest

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// cpioWriter writes the "newc" format the kernel unpacks as an initramfs.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

func (c *cpioWriter) header(name string, mode uint32, size int, nlink uint32) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// dir, file and symlink add one entry; names are relative, without "/".
func (c *cpioWriter) dir(name string, perm fs.FileMode) {
	c.header(name, 0o040000|uint32(perm.Perm()), 0, 2)
}

func (c *cpioWriter) file(name string, perm fs.FileMode, data []byte) {
	c.header(name, 0o100000|uint32(perm.Perm()), len(data), 1)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) symlink(name, target string) {
	c.header(name, 0o120000|0o777, len(target), 1)
	c.write([]byte(target))
	c.pad(len(target))
}

func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, 0, 1)
	return c.err
}

// addTree adds every file below root, as paths relative to it.
func (c *cpioWriter) addTree(root string) error {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		name := strings.TrimPrefix(p, root+"/")
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			c.dir(name, info.Mode())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			c.symlink(name, target)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			c.file(name, info.Mode(), data)
		}
	}
	return c.err
}
