package api_test

import (
	"testing"

	"github.com/rekeyd/rekey/agent/api"
)

func TestConnectionLimitsKeepAReserveForRootAndTheAgent(t *testing.T) {
	const agentUID = 501
	acquire, release := api.ConnLimits(10, 4, 3, func(uid int) bool { return uid == 0 || uid == agentUID })
	take := func(uid, n int) int {
		got := 0
		for range n {
			if acquire(uid) {
				got++
			}
		}
		return got
	}
	if got := take(1000, 5); got != 3 {
		t.Fatalf("uid 1000 got %d connections, want its cap of 3", got)
	}
	if got := take(1001, 5); got != 3 {
		t.Fatalf("uid 1001 got %d connections, want its cap of 3", got)
	}
	if got := take(1002, 5); got != 0 {
		t.Fatalf("uid 1002 got %d connections; the 6 unreserved are taken", got)
	}
	if got := take(-1, 1); got != 0 {
		t.Fatal("an unknown peer got a reserved connection")
	}
	if got := take(0, 3) + take(agentUID, 3); got != 4 {
		t.Fatalf("root and the agent got %d connections, want the 4 reserved", got)
	}
	if acquire(0) {
		t.Fatal("root got a connection past the total")
	}
	release(1000)
	if !acquire(1002) {
		t.Fatal("a freed connection was not available to another uid")
	}
	release(0)
	if acquire(1003) {
		t.Fatal("a freed reserved connection went to an unprivileged uid")
	}
	if !acquire(agentUID) {
		t.Fatal("the agent did not get the freed reserved connection")
	}
}
