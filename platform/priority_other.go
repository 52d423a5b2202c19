//go:build !linux && !darwin

package platform

func lowerThreadPriority() error { return ErrUnsupported }
