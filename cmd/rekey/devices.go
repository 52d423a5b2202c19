package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// deviceFlags are the filters and format of `rekey devices`.
type deviceFlags struct {
	coverage, expiring, prefix, released string
	json, csv                            bool
}

func runDevices(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("devices", env.Stderr)
	sock := socketFlag(fs)
	var f deviceFlags
	fs.StringVar(&f.coverage, "coverage", "", "only devices in this coverage state: active, expired, none or unknown")
	fs.StringVar(&f.expiring, "expiring", "", "only devices whose coverage ends within this time from now, e.g. 90d or 36h")
	fs.StringVar(&f.prefix, "serial-prefix", "", "only serial numbers that begin with this")
	fs.StringVar(&f.released, "released", "", "include (default), exclude or only the devices that left the organisation")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON")
	fs.BoolVar(&f.csv, "csv", false, "print CSV with a header row")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	arg, err := oneArg(fs, "tenant (id or name)")
	if err != nil {
		return err
	}
	if f.json && f.csv {
		return usageError("--json and --csv exclude each other; pick one")
	}
	q := store.DeviceQuery{Coverage: f.coverage, SerialPrefix: f.prefix, Released: f.released, Limit: api.MaxPageSize}
	var from time.Time
	if f.expiring != "" {
		d, err := parseDays(f.expiring)
		if err != nil {
			return usageError("--expiring %q: %v", f.expiring, err)
		}
		from = time.Now().UTC()
		q.EndBefore = from.Add(d)
	}
	if _, err := api.DeviceQueryOf(api.DeviceQueryValues(q)); err != nil {
		return usageError("%v", strings.TrimPrefix(err.Error(), api.ErrInvalid.Error()+": "))
	}
	c, err := newClient(env, *sock)
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := resolveTenant(ctx, c, arg)
	if err != nil {
		return err
	}
	var devs []store.Device
	for {
		page, err := c.Devices(ctx, id, q)
		if err != nil {
			return err
		}
		for _, d := range page.Devices {
			if from.IsZero() || !d.CoverageEnd.Before(from) { // --expiring: not those already ended
				devs = append(devs, d)
			}
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	switch {
	case f.json:
		return printJSON(env.Stdout, api.DevicePage{Devices: nonNilDevices(devs)})
	case f.csv:
		return writeDevicesCSV(env.Stdout, devs)
	}
	return writeDevicesTable(env.Stdout, devs)
}

func nonNilDevices(d []store.Device) []store.Device {
	if d == nil {
		return []store.Device{}
	}
	return d
}

// parseDays reads a duration as Go writes one ("36h") or in days ("90d").
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("want a whole number of days such as 90d")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want days (90d) or a duration (36h)")
	}
	return d, nil
}

// deviceColumns is the CSV header; each row follows it.
var deviceColumns = []string{"serial", "model", "product_family", "status", "coverage_state", "coverage_end",
	"coverage_checked_at", "released_at", "coverage_ids"}

func writeDevicesCSV(w io.Writer, devs []store.Device) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(deviceColumns); err != nil {
		return err
	}
	for _, d := range devs {
		ids := make([]string, len(d.Coverage))
		for i, c := range d.Coverage {
			ids[i] = c.ID
		}
		if err := cw.Write([]string{d.Serial, d.Model, d.ProductFamily, d.Status, d.CoverageState, rfc3339(d.CoverageEnd),
			rfc3339(d.CoverageCheckedAt), rfc3339(d.ReleasedAt), strings.Join(ids, " ")}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func writeDevicesTable(w io.Writer, devs []store.Device) error {
	if len(devs) == 0 {
		_, err := fmt.Fprintln(w, "No devices match.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tMODEL\tFAMILY\tCOVERAGE\tENDS\tCHECKED\tRELEASED")
	for _, d := range devs {
		ends := "-"
		if !d.CoverageEnd.IsZero() {
			ends = d.CoverageEnd.UTC().Format(time.DateOnly)
		} else if d.CoverageState == store.CoverageActive {
			ends = "open-ended"
		}
		released := "-"
		if !d.ReleasedAt.IsZero() {
			released = when(d.ReleasedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Serial, d.Model, d.ProductFamily, d.CoverageState, ends,
			when(d.CoverageCheckedAt), released)
	}
	return tw.Flush()
}
