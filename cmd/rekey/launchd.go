package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/kardianos/service"
	"github.com/rekeyd/rekey/platform"
)

// launchdManager keeps kardianos for writing the plist and drives the daemon
// with platform.Launchctl (bootstrap, bootout, kickstart, print), the verbs
// the installer package's scripts use, instead of kardianos's load, unload
// and list.
type launchdManager struct {
	serviceManager // Install and Platform
	ctl            platform.Launchctl
}

var _ serviceManager = launchdManager{}

func (m launchdManager) Start() error { return m.ctl.Start() }
func (m launchdManager) Stop() error  { return m.ctl.Stop() }

// Uninstall boots the daemon out and removes its plist.
func (m launchdManager) Uninstall() error {
	if err := m.ctl.Stop(); err != nil {
		return err
	}
	if err := os.Remove(m.ctl.Plist); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", m.ctl.Plist, err)
	}
	return nil
}

// Status maps launchd's answer onto kardianos's states: a plist that launchd
// has not loaded is an installed, stopped service.
func (m launchdManager) Status() (service.Status, error) {
	st, err := m.ctl.Status()
	switch {
	case err != nil:
		return service.StatusUnknown, err
	case st == platform.LaunchdRunning:
		return service.StatusRunning, nil
	case st == platform.LaunchdNotInstalled:
		return service.StatusUnknown, service.ErrNotInstalled
	}
	return service.StatusStopped, nil
}
