package embedpg

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// copyTree copies the template cluster src into the existing directory dst, giving every copy to
// the server user. io.Copy between files uses copy_file_range on Linux, so this is cheap.
func copyTree(src, dst string, ra runAs) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		return copyEntry(p, filepath.Join(dst, rel), d, ra)
	})
	if err != nil {
		return fmt.Errorf("embedpg: copy template %s to %s: %w", src, dst, err)
	}
	return nil
}

func copyEntry(src, dst string, d fs.DirEntry, ra runAs) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	switch {
	case d.IsDir():
		if err := os.MkdirAll(dst, info.Mode().Perm()); err != nil {
			return err
		}
		if err := os.Chmod(dst, info.Mode().Perm()); err != nil { // MkdirAll leaves an existing dst alone
			return err
		}
	case d.Type()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	default:
		if err := copyFile(src, dst, info.Mode().Perm()); err != nil {
			return err
		}
	}
	if ra.switches() {
		return os.Lchown(dst, ra.uid, ra.gid)
	}
	return nil
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
