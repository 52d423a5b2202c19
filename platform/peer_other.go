//go:build !linux && !darwin

package platform

func peerOfFD(int) (Peer, error) { return Peer{}, ErrUnsupported }
