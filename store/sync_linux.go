package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync makes f's data durable, without the metadata a read does not
// need (its times).
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// startWritebackFile starts the writeback of f's dirty pages, without
// waiting for it.
func startWritebackFile(f *os.File) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
