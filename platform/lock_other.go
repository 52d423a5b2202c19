//go:build !unix

package platform

import (
	"fmt"
	"os"
)

func openLockFile(path string) (*os.File, error) {
	return nil, fmt.Errorf("lock %s: %w", path, ErrUnsupported)
}

func flockExclusive(*os.File) error { return ErrUnsupported }

func flockProbe(*os.File) (bool, error) { return false, ErrUnsupported }
