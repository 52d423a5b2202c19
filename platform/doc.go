// Package platform holds everything that differs by operating system: default
// paths, file-trust checks, peer credentials on Unix sockets, group lookups and
// service definitions. Logic takes paths and rules as parameters so that it is
// tested on Linux through the same code paths the Mac runs.
package platform

import "errors"

// ErrUnsupported is returned by functions that have no implementation on the
// running operating system. rekey fails loudly rather than dropping a feature.
var ErrUnsupported = errors.New("not supported on this operating system")
