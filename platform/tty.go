package platform

// NoEcho turns off echo on the terminal fd (keeping line editing) and returns
// the function that restores the previous settings. Turning echo off before
// a password prompt is printed means nothing typed after the prompt can echo.
func NoEcho(fd int) (restore func() error, err error) {
	return noEcho(fd)
}
