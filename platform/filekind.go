package platform

import "io/fs"

// FileKind names what a file mode says a path is, for error messages:
// "regular file", "folder", "symbolic link", "socket" or "special file".
func FileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "folder"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}
