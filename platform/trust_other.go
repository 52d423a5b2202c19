//go:build !unix

package platform

import (
	"fmt"
	"io/fs"
	"os"
)

func openNoBlock(path string) (*os.File, error) {
	return nil, fmt.Errorf("open %s for a trust check: %w", path, ErrUnsupported)
}

func ownerOf(fs.FileInfo) (int, error) {
	return 0, fmt.Errorf("file owner: %w", ErrUnsupported)
}
