package source

import (
	"os"
	"path/filepath"
	"strings"
)

// relevant says whether an event on name can change what a payload file
// holds or which folders must be watched. Events on other files in the
// same folders (other preference domains, temporary files) are ignored.
func (w *Watcher) relevant(name string) bool {
	name = filepath.Clean(name)
	if filepath.Base(name) == w.cfg.Domain+".plist" {
		return true
	}
	if _, ok := w.watched[name]; ok {
		return true // a watched folder itself was removed or renamed
	}
	if name == w.cfg.Dir || strings.HasPrefix(w.cfg.Dir, name+string(filepath.Separator)) {
		return true // the folder, or a folder on the way down to it
	}
	if !w.cfg.UserPrefs || filepath.Dir(name) != w.cfg.Dir {
		return false
	}
	base := filepath.Base(name)
	if w.users[base] {
		return true // a user subfolder went away or was replaced
	}
	fi, err := os.Lstat(name)
	return err == nil && fi.IsDir() && !strings.HasPrefix(base, ".")
}

// syncWatches makes the watched folders match the file system: Dir and its
// user subfolders when Dir exists, else the nearest existing ancestor of
// Dir. A folder replaced under the same name (deleted and re-created, or
// renamed over) is watched again. With all, every watch is re-added even
// if it looks in place, which recovers watches the kernel dropped.
//
// Folders can appear while watches are being added (mkdir -p), so the
// file system is looked at again until nothing changes; whatever appeared
// before its watch was in place is then picked up by the scan that follows.
func (w *Watcher) syncWatches(all bool) {
	if w.fw == nil {
		w.wanted() // still learn the user subfolders for the rescan
		return
	}
	for range 64 {
		want := w.wanted()
		changed := false
		for p, fi := range w.watched {
			if now, ok := want[p]; !ok || !os.SameFile(fi, now) {
				_ = w.fw.Remove(p) // fails when the kernel already dropped it
				delete(w.watched, p)
				changed = true
			}
		}
		for p, fi := range want {
			_, ok := w.watched[p]
			if ok && !all {
				continue
			}
			if err := w.fw.Add(p); err != nil {
				w.cfg.Logger.Warn("watch folder; relying on the periodic rescan", "dir", p, "err", err)
				delete(w.watched, p)
				continue
			}
			w.watched[p] = fi
			changed = changed || !ok
		}
		all = false
		if !changed {
			return
		}
	}
}

// wanted lists the folders that should be watched now, with what each is
// (for noticing replacement), and refreshes the set of user subfolders.
func (w *Watcher) wanted() map[string]os.FileInfo {
	want := map[string]os.FileInfo{}
	clear(w.users)
	fi, err := os.Stat(w.cfg.Dir)
	if err == nil && fi.IsDir() {
		want[w.cfg.Dir] = fi
		if w.cfg.UserPrefs {
			w.addUsers(want)
		}
		return want
	}
	for p := filepath.Dir(w.cfg.Dir); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			want[p] = fi
			return want
		}
		if p == filepath.Dir(p) {
			return want
		}
	}
}

// addUsers adds every user subfolder of Dir to want. Names starting with a
// dot are not users (temporary folders of an atomic folder replace).
func (w *Watcher) addUsers(want map[string]os.FileInfo) {
	entries, err := os.ReadDir(w.cfg.Dir)
	if err != nil {
		w.cfg.Logger.Warn("list user folders", "dir", w.cfg.Dir, "err", err)
		return
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(w.cfg.Dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			continue
		}
		want[p] = fi
		w.users[e.Name()] = true
	}
}
