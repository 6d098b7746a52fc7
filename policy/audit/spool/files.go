package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// fileSystem is the file layer the spool goes through: the operating system's (osFS), or in
// tests one that counts syncs and injects faults.
type fileSystem interface {
	OpenFile(name string, flag int, perm os.FileMode) (file, error)
	ReadDir(name string) ([]os.DirEntry, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	MkdirAll(name string, perm os.FileMode) error
}

// file is what the spool does with an open file; *os.File has it all.
type file interface {
	io.Reader
	io.ReaderAt
	io.Writer
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Close() error
}

// osFS is the operating system's files.
type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return f, nil
}

func (osFS) ReadDir(name string) ([]os.DirEntry, error)   { return os.ReadDir(name) }
func (osFS) Rename(oldname, newname string) error         { return os.Rename(oldname, newname) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) MkdirAll(name string, perm os.FileMode) error { return os.MkdirAll(name, perm) }

const (
	segmentPrefix = "seg-"
	segmentSuffix = ".log"
	cursorPrefix  = "cursor-"
	tempSuffix    = ".tmp"
	healthProbe   = ".healthy-probe"
)

// segment is a segment file: its name and the sequence number of its first record.
type segment struct {
	name  string
	first uint64
}

// segmentName is the file name of the segment whose first record is first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%s%020d%s", segmentPrefix, first, segmentSuffix)
}

// listSegments returns dir's segments in order. Other files are not segments.
func listSegments(fsys fileSystem, dir string) ([]segment, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	var segs []segment
	for _, e := range entries { // ReadDir sorts by name, and names sort by number
		digits, ok := strings.CutPrefix(e.Name(), segmentPrefix)
		digits, ok2 := strings.CutSuffix(digits, segmentSuffix)
		if !ok || !ok2 || len(digits) != 20 || !e.Type().IsRegular() {
			continue
		}
		first, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, segment{name: e.Name(), first: first})
	}
	return segs, nil
}

// syncDir makes dir's entries (files created, renamed or removed) durable.
func syncDir(fsys fileSystem, dir string) error {
	d, err := fsys.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open directory to fsync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// makeDir creates dir (mode 0700) when it does not exist, and makes its entry durable.
func makeDir(fsys fileSystem, dir string) error {
	_, err := fsys.ReadDir(dir)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read directory: %w", err)
	}
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	return syncDir(fsys, filepath.Dir(dir))
}

// createSegment creates (or empties) the segment whose first record is first, syncs it and
// the directory, and returns it open for appending.
func createSegment(fsys fileSystem, dir string, first uint64) (file, error) {
	path := filepath.Join(dir, segmentName(first))
	f, err := fsys.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("fsync new segment %s: %w", path, err)
	}
	if err := syncDir(fsys, dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// truncateSegment cuts a segment file to size bytes and syncs it.
func truncateSegment(fsys fileSystem, dir, name string, size int64) error {
	f, err := fsys.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open segment to truncate: %w", err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("truncate segment %s to %d bytes: %w", name, size, err)
	}
	return nil
}

// writeFileAtomic replaces dir/name with data: a temporary file written and synced, renamed
// over it, and the directory synced.
func writeFileAtomic(fsys fileSystem, dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
	f, err := fsys.OpenFile(path+tempSuffix, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(path+tempSuffix, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return syncDir(fsys, dir)
}

// readFile reads a small file whole.
func readFile(fsys fileSystem, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<10))
}
