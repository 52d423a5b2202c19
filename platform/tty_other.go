//go:build !linux && !darwin

package platform

func noEcho(int) (func() error, error) { return nil, ErrUnsupported }
