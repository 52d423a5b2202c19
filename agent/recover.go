package agent

import (
	"context"
	"fmt"

	"github.com/rekeyd/rekey/store"
)

// recover finishes or fails cleanly whatever a crash interrupted. A
// rotation that was validated resumes at cut-over; one that was only staged
// is failed (its pending key wiped) and its import retried from the payload,
// unless it was kept staged for a retry after an unreachable required
// check (leftover.go); an import caught applying outside any rotation is
// failed and retried.
func (a *Agent) recover(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	rots, err := a.st.UnfinishedRotations(ctx)
	if err != nil {
		return fmt.Errorf("list unfinished rotations: %w", err)
	}
	for _, rot := range rots {
		switch rot.Step {
		case store.StepValidated:
			a.publish(ctx, store.Event{Kind: store.EvRotationResumed, TenantID: rot.TenantID, RotationID: rot.ID, ImportID: rot.ImportID,
				Message: "resuming an interrupted rotation at cut-over (it was validated)"})
			if err := a.cutover(ctx, rot); err != nil {
				return err
			}
		default:
			if a.keptForRetry(ctx, rot) {
				continue // kept for its import's retry, which checks it again (leftover.go)
			}
			reason := "interrupted before validation by a restart; it is retried from the payload"
			failed, err := a.st.FailRotation(ctx, rot.ID, reason)
			if err != nil {
				return fmt.Errorf("fail interrupted rotation: %w", err)
			}
			a.announce(failed)
		}
	}
	imps, err := a.st.Imports(ctx)
	if err != nil {
		return fmt.Errorf("list imports: %w", err)
	}
	for _, imp := range imps {
		switch {
		case imp.State != store.ImportApplying:
		case imp.Source == ManualSource:
			a.setImport(ctx, imp.ID, store.ImportFailed, "interrupted by a restart; nothing changed: run the manual rotation or add again", "")
		default:
			a.setImport(ctx, imp.ID, store.ImportFailed, "interrupted by a restart; it is retried from the payload", "")
		}
	}
	return nil
}
