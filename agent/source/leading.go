package source

import (
	"context"
	"path/filepath"
	"slices"

	"github.com/fsnotify/fsnotify"
)

// maxDrain bounds how many queued events one leading read takes in.
const maxDrain = 4096

// events handles ev and every event already queued behind it. A payload
// file created or renamed into place is complete (MDM agents write a
// temporary file and rename it), so it is read at once: the leading edge.
// Every other relevant event (a write in place, a removal, a folder
// change) opens the debounce window, and the files are read when it
// closes. A file caught half-written by the leading read fails Valid and
// waits for the window or Settle like any other invalid content.
func (w *Watcher) events(ctx context.Context, ev fsnotify.Event) bool {
	lead := map[string]string{} // payload path → user
	w.take(ev, lead)
	// Drain what is queued already (a bounded number, so that a flood of
	// events cannot hold off the end of ctx), so a burst of renames is read
	// once.
drain:
	for range maxDrain {
		select {
		case ev, ok := <-w.watchEvents():
			if !ok {
				break drain // the next step restarts the watcher
			}
			w.take(ev, lead)
		default:
			break drain
		}
	}
	if len(lead) == 0 {
		return true
	}
	paths := make([]string, 0, len(lead))
	for p := range lead {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		if !w.check(ctx, p, lead[p], false) {
			return false
		}
	}
	if w.onScan != nil {
		w.onScan()
	}
	return true
}

// take sorts one event: a payload file put in place goes into lead, any
// other relevant event opens the debounce window. Attribute-only events
// come in floods from Spotlight and backup tools on macOS; a mode or owner
// change alone (which can change the trust verdict) is seen at the next
// read or rescan.
func (w *Watcher) take(ev fsnotify.Event, lead map[string]string) {
	rel := ev.Op != fsnotify.Chmod && w.relevant(ev.Name)
	w.cfg.Logger.Debug("file event", "event", ev.String(), "relevant", rel)
	if !rel {
		return
	}
	if ev.Has(fsnotify.Create) {
		if user, ok := w.payload(ev.Name); ok {
			lead[filepath.Clean(ev.Name)] = user
			return
		}
	}
	w.arm()
}

// payload says whether name is one of the payload files watched now, and
// whose: the machine-scope file, or the file of a known user subfolder. A
// file in a user subfolder not yet watched waits for the debounce pass,
// which adds the watch.
func (w *Watcher) payload(name string) (user string, ok bool) {
	name = filepath.Clean(name)
	if name == w.machine {
		return "", true
	}
	if !w.cfg.UserPrefs || filepath.Base(name) != w.cfg.Domain+".plist" {
		return "", false
	}
	folder := filepath.Dir(name)
	user = filepath.Base(folder)
	if filepath.Dir(folder) != w.cfg.Dir || !w.users[user] {
		return "", false
	}
	return user, true
}
