package agent

// SetCrashHook arms the crash hook for the crash-recovery tests: f is called
// at every recorded step of an import and a rotation. Tests only.
func SetCrashHook(f func(point string)) { crashHook = f }
