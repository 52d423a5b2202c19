//go:build !unix

package platform

// RaiseFileLimit is unsupported here: ErrUnsupported.
func RaiseFileLimit() (int, error) { return 0, ErrUnsupported }
