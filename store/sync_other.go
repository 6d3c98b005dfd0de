//go:build !linux

package store

import "os"

// fdatasync makes f's data durable (on macOS, Sync is F_FULLFSYNC).
func fdatasync(f *os.File) error { return f.Sync() }

// startWritebackFile does nothing where there is no sync_file_range.
func startWritebackFile(*os.File) {}
