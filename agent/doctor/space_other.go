//go:build !linux && !darwin

package doctor

import (
	"errors"
	"io/fs"
)

var errUnsupported = errors.New("not supported on this system")

func freeBytes(string) (uint64, error) { return 0, errUnsupported }

func readOnlyFS(string) bool { return false }

func owner(fs.FileInfo) (int, bool) { return 0, false }
